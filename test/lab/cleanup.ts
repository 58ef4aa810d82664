// Remove NAT lab namespaces left behind by crashed runs.
//   bun test/lab/cleanup.ts          only labs whose creating process is gone
//   bun test/lab/cleanup.ts --all    every lab namespace (stops running labs too)
import { cleanupStaleLabs } from "./lab";

const removed = await cleanupStaleLabs({ includeLive: process.argv.includes("--all") });
console.log(removed.length ? `removed ${removed.length} namespaces:\n  ${removed.join("\n  ")}` : "no stale lab namespaces");
