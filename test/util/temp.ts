// Temporary directories for tests, fixtures and scripts: made under the
// system's temp directory and removed at the end (also after a failed test),
// so a run leaves nothing behind, not even the 111 MB binary copies. bun test
// emits no 'exit' to the test files, so test/util/preload.ts removes them
// after the last test; a script's own exit does, and so does a signal.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const made: string[] = [];
let hooked = false;

/** removes every directory tempDir() made so far */
export function removeTempDirs(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** a new directory `PREFIX-XXXXXX`, removed after the tests (or at process exit) */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  made.push(dir);
  if (!hooked) {
    hooked = true;
    process.on("exit", removeTempDirs);
    for (const sig of SIGNALS) process.on(sig, onSignal);
  }
  return dir;
}

const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/**
 * A signal ends the process without 'exit' (a benchmark stopped with
 * SIGTERM left its directory and binary copies behind): remove them, then
 * let the signal take its course. When another handler is still installed
 * (the lab's, which tears the namespaces down), that one re-raises it.
 */
function onSignal(sig: NodeJS.Signals): void {
  removeTempDirs();
  for (const s of SIGNALS) process.off(s, onSignal);
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}
