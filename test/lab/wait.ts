// Bounded polling: every wait in the lab has a deadline so a broken node turns
// into a clear failure instead of a hung test run.

export interface WaitForOptions {
  /** Give up after this long. Default 10 s. */
  timeoutMs?: number;
  /** Pause between attempts. Default 100 ms. */
  intervalMs?: number;
  /** Names the condition in the timeout error. */
  description?: string;
}

export class WaitTimeoutError extends Error {
  constructor(
    message: string,
    readonly attempts: number,
    readonly lastError: unknown,
  ) {
    super(message);
    this.name = "WaitTimeoutError";
  }
}

/**
 * Poll `predicate` until it returns a truthy value, and return that value.
 * A predicate that throws counts as "not yet"; its last error is reported on
 * timeout. A single slow attempt cannot overrun the deadline.
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  opts: WaitForOptions = {},
): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const intervalMs = Math.max(1, opts.intervalMs ?? 100);
  const deadline = Date.now() + timeoutMs;
  const what = opts.description ?? "condition";
  let attempts = 0;
  let lastError: unknown = undefined;
  let lastValue: unknown = undefined;
  const expired = Symbol("expired");

  while (true) {
    attempts++;
    const remaining = deadline - Date.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const value = await Promise.race([
        Promise.resolve().then(predicate),
        new Promise<typeof expired>((r) => {
          timer = setTimeout(() => r(expired), Math.max(0, remaining));
        }),
      ]);
      if (value !== expired) {
        if (value) return value as NonNullable<T>;
        lastValue = value;
        lastError = undefined;
      }
    } catch (err) {
      lastError = err;
    } finally {
      clearTimeout(timer);
    }
    if (Date.now() + intervalMs > deadline) break;
    await Bun.sleep(intervalMs);
  }
  const detail =
    lastError !== undefined
      ? `; last error: ${lastError instanceof Error ? lastError.message : String(lastError)}`
      : `; last value: ${safeJson(lastValue)}`;
  throw new WaitTimeoutError(`timed out after ${timeoutMs} ms (${attempts} attempts) waiting for ${what}${detail}`, attempts, lastError);
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}
