// bun:test glue: one lab per describe block / file, always destroyed.
import { afterAll, beforeAll } from "bun:test";
import { Lab, type LabOptions } from "./lab";

/**
 * Register beforeAll/afterAll hooks that create and destroy a lab. Returns an
 * accessor to call inside tests:
 *
 *   const lab = useLab();
 *   test("x", async () => { await lab().exec("edge1", ["true"]); });
 */
export function useLab(opts: LabOptions & { hookTimeoutMs?: number } = {}): () => Lab {
  let lab: Lab | undefined;
  const { hookTimeoutMs, ...labOpts } = opts;
  const timeout = hookTimeoutMs ?? 30_000;
  beforeAll(async () => {
    lab = await Lab.create(labOpts);
  }, timeout);
  afterAll(async () => {
    await lab?.destroy();
  }, timeout);
  return () => {
    if (!lab) throw new Error("lab is not ready: call the accessor inside a test, after beforeAll");
    return lab;
  };
}
