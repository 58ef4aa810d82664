import { describe, expect, test } from "bun:test";
import { Identities, deriveKey, pnetKey } from "../src/tunnel/identity.ts";
import { formatAgentVersion, parseAgentVersion } from "../src/tunnel/agent-version.ts";
import { nextBackoff } from "../src/agent/tunnel/relay-link.ts";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";

const enc = (s: string) => new TextEncoder().encode(s);

describe("derived identities", () => {
  test("the same secret and name give the same peer ID on every node (computable offline)", async () => {
    const a = new Identities(enc("mesh-secret-0123456789abcdef"));
    const b = new Identities(enc("mesh-secret-0123456789abcdef"));
    expect((await a.peerId("edge1")).toString()).toBe((await b.peerId("edge1")).toString());
    expect(peerIdFromPrivateKey(await deriveKey(enc("mesh-secret-0123456789abcdef"), "edge1")).toString()).toBe((await a.peerId("edge1")).toString());
  });

  test("another name or another secret gives another ID", async () => {
    const a = new Identities(enc("mesh-secret-0123456789abcdef"));
    const c = new Identities(enc("other-secret-0123456789abcdef"));
    const id = (await a.peerId("edge1")).toString();
    expect((await a.peerId("edge2")).toString()).not.toBe(id);
    expect((await c.peerId("edge1")).toString()).not.toBe(id);
  });

  test("matches() accepts only the name the ID was derived from", async () => {
    const a = new Identities(enc("mesh-secret-0123456789abcdef"));
    const id = await a.peerId("edge1");
    expect(await a.matches(id, "edge1")).toBe(true);
    expect(await a.matches(id, "edge2")).toBe(false);
    expect(await a.matches(id, "")).toBe(false);
    // the text form, as the proxy server authorizes openers
    expect(await a.matchesText(id.toString(), "edge1")).toBe(true);
    expect(await a.matchesText(id.toString(), "edge2")).toBe(false);
    expect(await a.matchesText(id.toString(), "")).toBe(false);
  });

  test("the pnet key is a swarm.key derived from the secret", () => {
    const k = new TextDecoder().decode(pnetKey(enc("mesh-secret-0123456789abcdef")));
    expect(k).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}$/);
    expect(k).not.toBe(new TextDecoder().decode(pnetKey(enc("other-secret-0123456789abcdef"))));
  });
});

describe("agent version claims", () => {
  test("round trip", () => {
    const s = formatAgentVersion("0.1.0+abc", { role: "agent", nodeName: "edge-1.lan" });
    expect(s).toBe("edgemesh/0.1.0+abc (role=agent; node=edge-1.lan)");
    expect(parseAgentVersion(s)).toEqual({ role: "agent", nodeName: "edge-1.lan" });
  });
  test("anything else is no claim", () => {
    for (const s of [undefined, "", "js-libp2p/3.0.0", "edgemesh/1 (role=admin; node=x)", "edgemesh/1 (role=agent; node=UPPER)"]) expect(parseAgentVersion(s)).toBeUndefined();
  });
});

describe("reconnect backoff", () => {
  test("doubles, caps, and jitters within ±25%", () => {
    const o = { initialMs: 500, maxMs: 5000 };
    expect(nextBackoff(500, o, () => 0.5)).toBe(1000);
    expect(nextBackoff(4000, o, () => 0.5)).toBe(5000);
    expect(nextBackoff(5000, o, () => 0)).toBe(3750);
    expect(nextBackoff(5000, o, () => 0.999)).toBeLessThanOrEqual(6250);
  });
});
