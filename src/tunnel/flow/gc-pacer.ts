// Collects garbage in step with the bytes moved. Every chunk a tunnel carries
// leaves short-lived buffers behind (the socket's read, noise's ciphertext,
// frame headers); the runtime's own heuristics let that garbage reach tens of
// MiB before collecting it (measured: heap swinging between 25 and 85 MiB on
// an agent moving 25 MB/s over 16 streams, with under 10 MiB live).
//
// Two steps, because they cost very different amounts (measured on an agent
// moving 1 GiB at 200–400 MB/s):
// - every PACE_BYTES moved, an eden (young generation) collection: the
//   chunks are young garbage, so it frees them for about 1.5 ms;
// - only when RSS stands RELEASE_MIB above the lowest RSS seen, and at most
//   once per RELEASE_INTERVAL_MS, Bun.gc(true): a full collection that also
//   hands the allocator's free pages back to the kernel. It costs 10–15 ms on
//   an agent's heap and the pages it returns fault back in as the transfer
//   goes on; run every 16 MiB it took half the agent's CPU (7.3 CPU-s/GiB for
//   both agents against 4.1 without it). Once a second bounds it to about 1%.
import { edenGC } from "bun:jsc";

const PACE_BYTES = 16 * 1024 * 1024;
const MIN_INTERVAL_MS = 20;
const RELEASE_MIB = 32;
const RELEASE_INTERVAL_MS = 1000;

let since = 0;
let last = 0;
let lastRelease = 0;
let collections = 0;
let releases = 0;
let floorMiB = 0;

const rssMiB = () => process.memoryUsage.rss() / 1048576;

/** counts bytes moved by a pipe or relay; collects when PACE_BYTES have passed */
export function noteBytes(n: number): void {
  since += n;
  if (floorMiB === 0) floorMiB = rssMiB(); // the first bytes: RSS at rest
  if (since < PACE_BYTES || typeof Bun === "undefined") return;
  const now = performance.now();
  if (now - last < MIN_INTERVAL_MS) return;
  since = 0;
  last = now;
  collections++;
  edenGC();
  const rss = rssMiB();
  if (rss < floorMiB) floorMiB = rss;
  if (rss - floorMiB < RELEASE_MIB || now - lastRelease < RELEASE_INTERVAL_MS) return;
  lastRelease = now;
  releases++;
  Bun.gc(true);
}

export function pacerCounters(): { pacedCollections: number; pacedReleases: number } {
  return { pacedCollections: collections, pacedReleases: releases };
}
