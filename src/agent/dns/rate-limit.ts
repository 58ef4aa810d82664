// Per-source token buckets for what costs an upstream query: a client may
// have forwarded names looked up at `rate` per second (bursts of twice that);
// beyond it the answer is REFUSED. Answers from the zone and the cache are
// never limited. The table of sources is bounded: when full, the oldest
// bucket goes (a source that comes back starts full, which costs at most one
// burst).
export class SourceRateLimit {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly rate: number,
    private readonly maxSources = 4096,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** true when `source` may have one more query forwarded now */
  take(source: string): boolean {
    if (this.rate <= 0) return true;
    const t = this.now();
    const burst = this.rate * 2;
    let b = this.buckets.get(source);
    if (b) {
      b.tokens = Math.min(burst, b.tokens + ((t - b.at) / 1000) * this.rate);
      b.at = t;
      // most recently used last, so the first is the one to evict
      this.buckets.delete(source);
    } else {
      if (this.buckets.size >= this.maxSources) this.buckets.delete(this.buckets.keys().next().value!);
      b = { tokens: burst, at: t };
    }
    this.buckets.set(source, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}
