// npm may skip or hold back the `bun` package's own install script (ignore-scripts,
// or the postinstall that swaps in the native binary failing silently). Check that
// node_modules/.bin/bun really runs, and if not, link the platform binary ourselves.
import { execFileSync } from "node:child_process";
import { existsSync, chmodSync, rmSync, symlinkSync, readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = join(root, "node_modules", ".bin", "bun");

function works(path) {
  try {
    execFileSync(path, ["--version"], { stdio: "pipe", timeout: 20000 });
    return true;
  } catch {
    return false;
  }
}

if (works(bin)) process.exit(0);

const arch = process.arch === "arm64" ? "aarch64" : "x64";
const candidates = [
  `@oven/bun-linux-${arch}`,
  `@oven/bun-linux-${arch}-baseline`,
].map((p) => join(root, "node_modules", p, "bin", "bun"));
const found = candidates.find((p) => existsSync(p) && works(p));
if (!found) {
  console.error("ensure-bun: no working bun binary found in node_modules/@oven/*; is the optional dependency installed?");
  process.exit(1);
}
const pkgBin = join(root, "node_modules", "bun", "bin", "bun.exe");
for (const target of [pkgBin, bin]) {
  try { rmSync(target, { force: true }); } catch {}
  symlinkSync(found, target);
}
chmodSync(found, 0o755);
console.error(`ensure-bun: linked ${found}`);

