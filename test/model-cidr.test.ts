import { expect, test } from "bun:test";
import { cidrContains, cidrsOverlap, intToIp4, ip4ToInt, parseCidr4, podCidr } from "../src/model/cidr.ts";

test("CIDRs parse strictly: network address, no host bits, canonical length", () => {
  expect(parseCidr4("10.244.1.0/24")).toEqual({ base: ip4ToInt("10.244.1.0")!, len: 24, text: "10.244.1.0/24" });
  expect(parseCidr4("0.0.0.0/0")?.len).toBe(0);
  for (const bad of ["10.244.1.1/24", "10.244.1.0/33", "10.244.1.0/024", "10.244.01.0/24", "10.244.1.0", "10.244.1.0/24 ", "a.b.c.d/8", "10.244.1.0/-1"]) expect(parseCidr4(bad)).toBeUndefined();
  expect(podCidr.safeParse("fd00:10:244:1::/64").success).toBe(true);
  expect(podCidr.safeParse("10.244.1.7/24").success).toBe(false);
});

test("containment and overlap", () => {
  const c = parseCidr4("10.244.2.0/24")!;
  expect(cidrContains(c, ip4ToInt("10.244.2.255")!)).toBe(true);
  expect(cidrContains(c, ip4ToInt("10.244.3.0")!)).toBe(false);
  expect(cidrsOverlap(c, parseCidr4("10.244.0.0/16")!)).toBe(true);
  expect(cidrsOverlap(c, parseCidr4("10.244.3.0/24")!)).toBe(false);
  expect(intToIp4(ip4ToInt("192.0.2.200")!)).toBe("192.0.2.200");
});
