// docs/config.md is generated from the zod schema: it must be current, every
// field must carry a description, and the defaults it shows must be the ones
// the loader really applies.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { z } from "zod";
import { configSchema } from "../src/config/schema.ts";
import { CONFIG_DOC_PATH, REGENERATE, collectSections, renderConfigDoc } from "../scripts/gen-config-doc.ts";

describe("docs/config.md", () => {
  test("is up to date with src/config/schema.ts", () => {
    const want = renderConfigDoc();
    const have = readFileSync(CONFIG_DOC_PATH, "utf8");
    if (have !== want) {
      const a = have.split("\n");
      const b = want.split("\n");
      let i = 0;
      while (i < a.length && a[i] === b[i]) i++;
      throw new Error(
        `docs/config.md is stale (first difference at line ${i + 1}):\n  file:      ${a[i] ?? "(end of file)"}\n  generated: ${b[i] ?? "(end of file)"}\nRegenerate it: ${REGENERATE}`,
      );
    }
  });

  test("lists every field of the schema, each with type and description", () => {
    const rows = collectSections().flatMap((s) => s.rows);
    const paths = rows.map((r) => r.path);
    for (const p of ["nodeName", "psk", "server.listenPort", "agent.servers", "agent.dns.listen", "agent.metadata.static.services[].endpoints[].nodeName", "agent.socks5.listen"]) {
      expect(paths).toContain(p);
    }
    for (const r of rows) {
      expect(r.type.length).toBeGreaterThan(0);
      expect(r.description.length).toBeGreaterThan(10);
    }
    const doc = renderConfigDoc();
    expect(doc).toContain('| `agent.dns.listen` | host:port | `"169.254.96.16:53"` |');
    expect(doc).toContain("| `psk` | string (non-empty) | required |");
    expect(doc).toContain("| `agent.metadata.source` | kubernetes \\| static | `\"kubernetes\"` |");
  });

  test("documented defaults are the ones the loader applies", () => {
    const loaded = configSchema.parse({ psk: "psk" }) as Record<string, unknown>;
    const at = (path: string): unknown => path.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], loaded);
    let checked = 0;
    const rows = collectSections().flatMap((s) => s.rows);
    const optional = new Set(rows.filter((r) => r.default === "none").map((r) => r.path));
    for (const r of rows) {
      if (r.path.includes("[]")) continue; // list entries: no entry exists in a default config
      // inside an optional section absent by default (trust)
      if ([...optional].some((p) => r.path.startsWith(`${p}.`)) || at(r.path.split(".").slice(0, -1).join(".") || r.path) === undefined) continue;
      if (r.default === "required") continue;
      if (r.default === "none") expect({ path: r.path, value: at(r.path) }).toEqual({ path: r.path, value: undefined });
      else expect({ path: r.path, value: at(r.path) }).toEqual({ path: r.path, value: JSON.parse(r.default) });
      checked++;
    }
    expect(checked).toBeGreaterThan(20);
  });

  test("a field without a description stops the generator and is named", () => {
    const schema = z.strictObject({
      listen: z.string().default("x").describe("where to listen"),
      nested: z.strictObject({ port: z.number().int().min(1).max(65535).default(1) }).prefault({}).describe("a section"),
    });
    expect(() => renderConfigDoc(schema)).toThrow("nested.port has no description");
  });
});
