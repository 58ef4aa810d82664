// A failed dial is explained by a secret mismatch recorded for its address
// while it ran, also one recorded just after the dial's own error.
import { expect, test } from "bun:test";
import { SecretMismatches } from "../src/tunnel/secret-mismatch.ts";

const quiet = { warn() {} };

test("a mismatch recorded shortly after the dial failed still names the cause; none recorded, or an older one, does not", async () => {
  const m = new SecretMismatches(quiet);
  const started = Date.now();
  setTimeout(() => m.record("10.0.0.2:20004", "outbound"), 20);
  expect(await m.failedSince(["10.0.0.1:20004", "10.0.0.2:20004"], started)).toBe(true);
  expect(await m.failedSince(["10.0.0.3:20004"], started)).toBe(false);
  expect(await m.failedSince(["10.0.0.2:20004"], Date.now() + 1000)).toBe(false);
});
