// Temporary directories go with the process, also when a signal ends it (a
// benchmark or lab script stopped with SIGTERM or ^C).
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";

const TEMP = join(import.meta.dir, "util", "temp.ts");

for (const sig of ["SIGTERM", "SIGINT"] as const) {
  test(`a process ended by ${sig} removes the directories it made, and still dies of the signal`, async () => {
    const child = Bun.spawn([process.execPath, "-e", `import { tempDir } from ${JSON.stringify(TEMP)}; console.log(tempDir("edgemesh-sigtest")); setInterval(() => {}, 1000);`], { stdout: "pipe" });
    const reader = child.stdout.getReader();
    let out = "";
    while (!out.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      out += new TextDecoder().decode(value);
    }
    const dir = out.trim();
    expect(existsSync(dir)).toBe(true);
    child.kill(sig);
    await child.exited;
    expect(child.signalCode).toBe(sig);
    expect(existsSync(dir)).toBe(false);
  });
}
