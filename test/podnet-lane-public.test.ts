// Our lane's public address as servers see it: asked of a server when an
// offer needs it, what counts as a change, and when an answer stops counting.
import { expect, test } from "bun:test";
import { PublicLaneAddress, STALE_MS } from "../src/agent/podnet/lane-public.ts";
import { createLogger } from "../src/log.ts";

const log = createLogger("test", "error");
const SERVER = { peer: "server-peer", ip: "192.0.2.10" };

test("without a server an offer does not wait; with one, it waits for the server's answer", async () => {
  const none = new PublicLaneAddress(() => [], async () => {}, log, 30_000);
  const t0 = performance.now();
  expect(await none.get(1000)).toBeUndefined();
  expect(performance.now() - t0).toBeLessThan(50);

  let addr: PublicLaneAddress;
  const asked: string[] = [];
  // the server answers 20 ms after the registration
  addr = new PublicLaneAddress(() => [SERVER], async (peer) => void (asked.push(peer), setTimeout(() => addr.told("192.0.2.10:20007", "192.0.2.11", 41234), 20)), log, 30_000);
  expect(await addr.get(1000)).toEqual({ ip: "192.0.2.11", port: 41234 });
  expect(asked).toEqual(["server-peer"]);
  // known now: no second registration
  expect(await addr.get(1000)).toEqual({ ip: "192.0.2.11", port: 41234 });
  expect(asked.length).toBe(1);
});

test("a server that never answers (an older one, UDP blocked) is not asked again before the retry time, and offers stop waiting", async () => {
  let asks = 0;
  const addr = new PublicLaneAddress(() => [SERVER], async () => void asks++, log, 200, 30);
  expect(await addr.get(100)).toBeUndefined();
  await Bun.sleep(40); // the round ends after the server's 30 ms
  const t0 = performance.now();
  expect(await addr.get(100)).toBeUndefined();
  expect(performance.now() - t0).toBeLessThan(20);
  expect(asks).toBe(1);
  await Bun.sleep(200);
  await addr.get(100);
  expect(asks).toBe(2);
});

test("first, same and changed: only the offered server's new address is a change; an answer older than 30 s no longer counts", () => {
  const addr = new PublicLaneAddress(() => [SERVER], async () => {}, log, 30_000);
  const t = 1_000_000;
  expect(addr.told("a:20007", "192.0.2.11", 40001, t)).toBe("first");
  expect(addr.told("a:20007", "192.0.2.11", 40001, t + 10_000)).toBe("same");
  // another server seeing another port does not change what we offer
  expect(addr.told("b:20007", "192.0.2.11", 40999, t + 10_000)).toBe("same");
  expect(addr.current(t + 10_000)).toEqual({ ip: "192.0.2.11", port: 40001 });
  expect(addr.told("a:20007", "192.0.2.11", 40002, t + 11_000)).toBe("changed");
  expect(addr.current(t + 11_000)).toEqual({ ip: "192.0.2.11", port: 40002 });
  // servers gone silent (restarted, our grant forgotten): their answers stop counting
  expect(addr.current(t + 11_000 + STALE_MS + 1)).toBeUndefined();
});
