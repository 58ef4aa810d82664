// A seeded pseudo-random source (xorshift32) for fuzz tests: the same seed
// gives the same packets, so a failure can be replayed.
export function seededRandom(seed: number): (n: number) => number {
  let s = seed | 0 || 1;
  return (n) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
}
