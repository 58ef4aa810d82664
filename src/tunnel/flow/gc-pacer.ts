// Collects garbage in step with the bytes moved. Every chunk a tunnel carries
// leaves short-lived buffers behind (the socket's read, noise's ciphertext,
// frame headers); the runtime's own heuristics let that garbage reach tens of
// MiB before collecting it (measured: heap swinging between 25 and 85 MiB on
// an agent moving 25 MB/s over 16 streams, with under 10 MiB live). A full
// collection every PACE_BYTES, at most one per MIN_INTERVAL_MS, keeps the
// swing near PACE_BYTES; on a heap this small it costs about 1–2 ms.
// (Bun.gc(false) only schedules a collection and did not bound the swing.)
const PACE_BYTES = 16 * 1024 * 1024;
const MIN_INTERVAL_MS = 50;

let since = 0;
let last = 0;
let collections = 0;

/** counts bytes moved by a pipe or relay; collects when PACE_BYTES have passed */
export function noteBytes(n: number): void {
  since += n;
  if (since < PACE_BYTES || typeof Bun === "undefined") return;
  const now = performance.now();
  if (now - last < MIN_INTERVAL_MS) return;
  since = 0;
  last = now;
  collections++;
  Bun.gc(true);
}

export function pacedCollections(): number {
  return collections;
}
