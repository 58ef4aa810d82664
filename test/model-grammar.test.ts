// The grammar every value from the metadata source must pass before it can
// reach a listener, an answer or a root command.
import { expect, test } from "bun:test";
import { ipFamily, isDnsLabel, isIanaSvcName, reservedUse } from "../src/model/grammar.ts";
import { formatLine } from "../src/log.ts";

test("addresses are parsed strictly: no leading zeros, zones, spaces or trailing text", () => {
  for (const s of ["10.96.0.1", "0.0.0.0", "255.255.255.255"]) expect(ipFamily(s)).toBe(4);
  for (const s of ["fd00::1", "::", "::ffff:10.0.0.1", "2001:db8::1.2.3.4", "1:2:3:4:5:6:7:8"]) expect(ipFamily(s)).toBe(6);
  for (const s of ["010.1.2.3", "1.2.3.256", "1.2.3", "1.2.3.4 ", "1.2.3.4\n", "fe80::1%eth0", "1::2::3", "10.0.0.0/8", "", "None", "localhost"]) expect(ipFamily(s)).toBe(0);
});

test("loopback, unspecified, link-local, multicast and broadcast are not service or backend addresses", () => {
  expect(reservedUse("127.0.0.53")).toBe("loopback");
  expect(reservedUse("::1")).toBe("loopback");
  expect(reservedUse("0:0:0:0:0:0:0:1")).toBe("loopback");
  expect(reservedUse("::ffff:127.0.0.1")).toBe("loopback");
  expect(reservedUse("0.0.0.0")).toBe("unspecified");
  expect(reservedUse("::")).toBe("unspecified");
  expect(reservedUse("169.254.169.254")).toBe("link-local");
  expect(reservedUse("fe80::1")).toBe("link-local");
  expect(reservedUse("febf::1")).toBe("link-local");
  expect(reservedUse("224.0.0.251")).toBe("multicast");
  expect(reservedUse("ff02::fb")).toBe("multicast");
  expect(reservedUse("255.255.255.255")).toBe("broadcast");
  for (const s of ["10.96.0.10", "192.168.1.2", "fd00::10", "2001:db8::1", "::2", "fec0::1"]) expect(reservedUse(s)).toBeUndefined();
});

test("names follow Kubernetes' grammars", () => {
  expect(isDnsLabel("web-1")).toBe(true);
  for (const s of ["Web", "-a", "a-", "a.b", "a b", "a".repeat(64), "", "a\n"]) expect(isDnsLabel(s)).toBe(false);
  expect(isIanaSvcName("http")).toBe(true);
  expect(isIanaSvcName("web-8080")).toBe(true);
  for (const s of ["8080", "a--b", "-http", "http-", "abcdefghijklmnop", "HTTP", ""]) expect(isIanaSvcName(s)).toBe(false);
});

test("a log line stays one line whatever a field holds", () => {
  const line = formatLine(new Date(0), "warn", "controller", "rejected", { object: "demo/a\nb\u2028c\u0085d\u001b[31m" });
  expect(line.slice(0, -1)).not.toMatch(/[\n\r\u2028\u0085\u001b]/);
  expect(line).toContain('object="demo/a\\nb\\u2028c\\u0085d\\u001b[31m"');
});
