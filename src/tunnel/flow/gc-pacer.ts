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
//   once per RELEASE_INTERVAL_MS (SLOW_RELEASE_INTERVAL_MS on a slow link), a
//   full collection (10-15 ms on an agent's heap): it frees the buffers that
//   outlived a young collection. On a slow link (under FAST_BYTES_PER_S since
//   the last one) Bun.gc(true), which also
//   makes the allocator return the pages now: cheap when few pages will be
//   taken again. On a fast one a plain full collection, and the allocator
//   returns the pages within its purge delay (daemon/allocator.ts) unless the
//   transfer reuses them first;
// - when RSS stands HARD_RELEASE_MIB above its lowest, Bun.gc(true) at once,
//   whatever the page faults cost: what the collections leave grows with the
//   link's speed (at 400-450 MB/s through one agent, +94-113 MiB at peak
//   without this cap, +25-60 MiB at 200 Mbit/s), the cap does not;
// - once the bytes stop (QUIET_MS without any), Bun.gc(true): a full
//   collection that also makes the allocator return every free page now.
// Bun.gc(true) in the middle of a transfer forced the pages it returned to be
// faulted in again: every 16 MiB it took half the agent's CPU (7.3 CPU-s/GiB
// for both agents against 4.1 without it); once a second still 75-80k page
// faults per 4 s against 40-50k with a plain full collection.
import { edenGC, fullGC } from "bun:jsc";

const PACE_BYTES = 16 * 1024 * 1024;
const MIN_INTERVAL_MS = 20;
const RELEASE_MIB = 32;
const RELEASE_INTERVAL_MS = 1000;
/** on a slow link (under FAST_BYTES_PER_S): measured, a 16-stream relayed sender at 200 Mbit/s peaked +55–75 MiB with 1 s, +35–47 with this */
const SLOW_RELEASE_INTERVAL_MS = 250;
/** bytes per second above which returning pages at once costs more than it saves */
const FAST_BYTES_PER_S = 64 * 1024 * 1024;
/** past this, pages go back at once, whatever it costs: RSS must not follow link speed */
const HARD_RELEASE_MIB = 96;
const QUIET_MS = 2000;

let since = 0;
let last = 0;
let lastRelease = 0;
let collections = 0;
let releases = 0;
let floorMiB = 0;
let lastBytesAt = 0;
let sinceRelease = 0;
let quietTimer: ReturnType<typeof setTimeout> | undefined;

const rssMiB = () => process.memoryUsage.rss() / 1048576;

/** counts bytes moved by a pipe or relay; collects when PACE_BYTES have passed */
export function noteBytes(n: number): void {
  const now = performance.now();
  since += n;
  lastBytesAt = now;
  if (floorMiB === 0) floorMiB = rssMiB(); // the first bytes: RSS at rest
  if (since < PACE_BYTES || typeof Bun === "undefined") return;
  if (now - last < MIN_INTERVAL_MS) return;
  sinceRelease += since;
  since = 0;
  last = now;
  collections++;
  edenGC();
  const rss = rssMiB();
  if (rss < floorMiB) floorMiB = rss;
  if (rss - floorMiB >= HARD_RELEASE_MIB) {
    releases++;
    lastRelease = now;
    sinceRelease = 0;
    Bun.gc(true);
    return;
  }
  if (rss - floorMiB < RELEASE_MIB) return;
  const perSecond = (sinceRelease * 1000) / Math.max(1, now - lastRelease);
  // a slow link releases more often: its collections are cheap, and a second
  // of its garbage on top of the threshold was most of a 16-stream sender's peak
  if (now - lastRelease < (perSecond < FAST_BYTES_PER_S ? SLOW_RELEASE_INTERVAL_MS : RELEASE_INTERVAL_MS)) return;
  lastRelease = now;
  releases++;
  sinceRelease = 0;
  if (perSecond < FAST_BYTES_PER_S) Bun.gc(true);
  else fullGC();
  quietTimer ??= setTimeout(whenQuiet, QUIET_MS);
  quietTimer.unref?.();
}

/** after a busy spell, once QUIET_MS pass without bytes: give every free page back */
function whenQuiet(): void {
  const idleMs = performance.now() - lastBytesAt;
  if (idleMs < QUIET_MS) {
    quietTimer = setTimeout(whenQuiet, QUIET_MS - idleMs);
    quietTimer.unref?.();
    return;
  }
  quietTimer = undefined;
  Bun.gc(true);
}

export function pacerCounters(): { pacedCollections: number; pacedReleases: number } {
  return { pacedCollections: collections, pacedReleases: releases };
}
