// Temporary directories for tests, fixtures and scripts: made under the
// system's temp directory and removed at the end (also after a failed test),
// so a run leaves nothing behind, not even the 111 MB binary copies. bun test
// emits no 'exit' to the test files, so test/util/preload.ts removes them
// after the last test; a script's own exit does.
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
  }
  return dir;
}
