// How many drops of one reason are put in the log per minute: the first few
// say what happens; the counters keep every one. Used on the main thread
// (its log) and on the reader thread (what it tells the main thread).
export const LOGGED_DROPS_PER_MINUTE = 5;

export class DropLogBudget {
  private readonly spent = new Map<string, { minute: number; n: number }>();

  /** whether one more drop of `reason` may be logged now */
  take(reason: string): boolean {
    const minute = Math.floor(Date.now() / 60_000);
    let s = this.spent.get(reason);
    if (!s || s.minute !== minute) this.spent.set(reason, (s = { minute, n: 0 }));
    return s.n++ < LOGGED_DROPS_PER_MINUTE;
  }
}
