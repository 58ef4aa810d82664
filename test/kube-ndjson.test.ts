import { describe, expect, test } from "bun:test";
import { NdjsonSplitter } from "../src/kube/ndjson.ts";

const enc = (s: string) => new TextEncoder().encode(s);

describe("watch body splitter", () => {
  const events = [
    { type: "ADDED", object: { metadata: { name: "a", resourceVersion: "1" } } },
    { type: "MODIFIED", object: { metadata: { name: "a", resourceVersion: "2" }, spec: { note: "ünïcode ✓" } } },
    { type: "BOOKMARK", object: { metadata: { resourceVersion: "9" } } },
  ];
  const body = enc(events.map((e) => JSON.stringify(e)).join("\n") + "\n");

  test("an event split over chunks at every byte boundary", () => {
    for (let cut = 1; cut < body.length; cut++) {
      const s = new NdjsonSplitter();
      const got = [...s.push(body.subarray(0, cut)), ...s.push(body.subarray(cut)), ...s.end()];
      expect(got).toEqual(events.map((value) => ({ ok: true, value })));
    }
  });

  test("several events in one chunk, and one byte at a time", () => {
    const s = new NdjsonSplitter();
    expect(s.push(body).map((r) => (r.ok ? r.value : null))).toEqual(events);
    const t = new NdjsonSplitter();
    const got = [];
    for (const b of body) got.push(...t.push(new Uint8Array([b])));
    expect(got.length).toBe(3);
  });

  test("a huge object (8 MiB) in many chunks", () => {
    const big = { type: "ADDED", object: { metadata: { name: "big" }, data: "x".repeat(8 << 20) } };
    const bytes = enc(JSON.stringify(big) + "\n");
    const s = new NdjsonSplitter();
    const got = [];
    for (let i = 0; i < bytes.length; i += 65536) got.push(...s.push(bytes.subarray(i, i + 65536)));
    expect(got).toHaveLength(1);
    expect((got[0] as { ok: true; value: typeof big }).value.object.data.length).toBe(8 << 20);
  });

  test("a malformed line is reported and skipped; the next line still parses", () => {
    const s = new NdjsonSplitter();
    const got = s.push(enc('{"type":"ADDED","object":{\n{"type":"DELETED","object":{}}\n'));
    expect(got[0]).toMatchObject({ ok: false });
    expect(got[1]).toEqual({ ok: true, value: { type: "DELETED", object: {} } });
  });

  test("a line over the cap is skipped without holding it in memory", () => {
    const s = new NdjsonSplitter(1024);
    const got = [...s.push(enc("x".repeat(2000))), ...s.push(enc('yyy\n{"ok":1}\n'))];
    expect(got[0]).toMatchObject({ ok: false });
    expect(got.at(-1)).toEqual({ ok: true, value: { ok: 1 } });
  });

  test("a last line without newline counts at end of stream", () => {
    const s = new NdjsonSplitter();
    expect(s.push(enc('{"a":1}'))).toEqual([]);
    expect(s.end()).toEqual([{ ok: true, value: { a: 1 } }]);
  });
});
