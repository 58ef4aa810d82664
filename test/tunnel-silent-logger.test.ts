// libp2p's per-connection and per-stream loggers are replaced by one shared
// logger that does nothing, unless DEBUG asks for libp2p's output.
import { expect, test } from "bun:test";
import { libp2pLoggerOption, silentLogger } from "../src/tunnel/silent-logger.ts";

test("one logger for every component and scope, doing nothing; DEBUG keeps libp2p's own", () => {
  const l = silentLogger();
  const a = l.forComponent("libp2p:yamux");
  expect(a.newScope("outbound:1")).toBe(a);
  expect(l.forComponent("other")).toBe(a);
  expect(a.enabled).toBe(false);
  expect(() => {
    a("%s", "x");
    a.error("e");
    a.trace("t");
  }).not.toThrow();
  expect(libp2pLoggerOption({}).logger).toBeDefined();
  expect(libp2pLoggerOption({ DEBUG: "libp2p:*" })).toEqual({});
});
