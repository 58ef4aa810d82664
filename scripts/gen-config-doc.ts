/**
 * Writes docs/config.md, the config reference, from the zod schema
 * (src/config/schema.ts): every field with its path, type, default and the
 * description given to it with `.describe()`.
 *
 *   node_modules/.bin/bun scripts/gen-config-doc.ts      (or: npm run docs:config)
 *
 * test/config-doc.test.ts renders the same text in memory and fails when the
 * committed file differs, so a schema change must come with a regenerated doc.
 * A field without a description is an error here, not a blank cell.
 */
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { z } from "zod";
import { configSchema } from "../src/config/schema.ts";

export const CONFIG_DOC_PATH = join(resolve(import.meta.dir, ".."), "docs/config.md");
export const REGENERATE = "node_modules/.bin/bun scripts/gen-config-doc.ts (or npm run docs:config)";

// zod 4 keeps a schema's definition in `_zod.def`; only the parts read here are typed.
interface Def {
  type: string;
  innerType?: Schema;
  element?: Schema;
  shape?: Record<string, Schema>;
  options?: Schema[];
  entries?: Record<string, string | number>;
  values?: unknown[];
  checks?: Array<{ _zod: { def: CheckDef } }>;
  defaultValue?: unknown;
}
interface CheckDef {
  check: string;
  format?: string;
  minimum?: number;
  maximum?: number;
  value?: number;
  inclusive?: boolean;
  error?: () => unknown;
}
interface Schema {
  _zod: { def: Def };
  description?: string;
}

const asSchema = (s: z.ZodType): Schema => s as unknown as Schema;

/** one field as the doc shows it */
export interface FieldRow {
  path: string;
  type: string;
  /** YAML/JSON text of the default, "required", or "none" */
  default: string;
  description: string;
}

export interface Section {
  /** path of the mapping ("" for the top level), e.g. "agent.tunnel" or "agent.metadata.static.services[]" */
  path: string;
  description: string;
  rows: FieldRow[];
}

interface Unwrapped {
  core: Schema;
  description: string;
  hasDefault: boolean;
  defaultValue: unknown;
  optional: boolean;
}

/** peels default/prefault/optional wrappers, keeping the first description and default met */
function unwrap(s: Schema): Unwrapped {
  const out: Unwrapped = { core: s, description: "", hasDefault: false, defaultValue: undefined, optional: false };
  for (;;) {
    if (!out.description && s.description) out.description = s.description;
    const d = s._zod.def;
    if (d.type === "default" && !out.hasDefault) {
      out.hasDefault = true;
      out.defaultValue = d.defaultValue;
    } else if (d.type === "prefault" && !out.hasDefault) {
      out.hasDefault = true;
      out.defaultValue = d.defaultValue;
    } else if (d.type === "optional") {
      out.optional = true;
    }
    if ((d.type === "default" || d.type === "prefault" || d.type === "optional") && d.innerType) {
      s = d.innerType;
      continue;
    }
    out.core = s;
    return out;
  }
}

/** "expected an IP address" → "IP address": the validators' own words name the format */
function formatFromMessage(check: CheckDef): string | undefined {
  const msg = check.error?.();
  if (typeof msg !== "string") return undefined;
  const m = /^expected (?:an? )?(.+)$/.exec(msg);
  return m?.[1];
}

function range(min: number | undefined, max: number | undefined, unit = ""): string {
  if (min !== undefined && max !== undefined) return `${min}–${max}${unit}`;
  if (min !== undefined) return `≥ ${min}${unit}`;
  if (max !== undefined) return `≤ ${max}${unit}`;
  return "";
}

export function typeName(schema: Schema): string {
  const { core } = unwrap(schema);
  const d = core._zod.def;
  const checks = (d.checks ?? []).map((c) => c._zod.def);
  switch (d.type) {
    case "string": {
      for (const c of checks) {
        if (c.check === "custom" || (c.check === "string_format" && c.format === "regex")) {
          const f = formatFromMessage(c);
          if (f) return f;
        }
        if (c.check === "string_format" && c.format === "url") return "URL";
      }
      const min = checks.find((c) => c.check === "min_length")?.minimum;
      const max = checks.find((c) => c.check === "max_length")?.maximum;
      if (min === 1 && max === undefined) return "string (non-empty)";
      const r = range(min, max, " characters");
      return r ? `string (${r})` : "string";
    }
    case "number": {
      const int = checks.some((c) => c.check === "number_format" && (c.format === "safeint" || c.format === "int32"));
      const min = checks.find((c) => c.check === "greater_than")?.value;
      const max = checks.find((c) => c.check === "less_than")?.value;
      const r = range(min, max);
      return `${int ? "integer" : "number"}${r ? ` ${r}` : ""}`;
    }
    case "boolean":
      return "boolean";
    case "enum":
      return Object.values(d.entries ?? {}).map(String).join(" | ");
    case "literal":
      return (d.values ?? []).map((v) => JSON.stringify(v)).join(" | ");
    case "union":
      return (d.options ?? []).map(typeName).join(" or ");
    case "array": {
      const el = unwrap(d.element!).core;
      if (el._zod.def.type === "object") return "list of mappings";
      return `list of ${typeName(d.element!)}`;
    }
    case "object":
      return "mapping";
    default:
      throw new Error(`gen-config-doc: no type name for zod type "${d.type}"; teach typeName() about it`);
  }
}

function formatDefault(u: Unwrapped): string {
  if (u.hasDefault) return JSON.stringify(u.defaultValue);
  return u.optional ? "none" : "required";
}

function isObject(s: Schema): boolean {
  return s._zod.def.type === "object";
}

/** every mapping of the schema, depth first, each with the rows of its non-mapping fields */
export function collectSections(root: z.ZodType = configSchema): Section[] {
  const sections: Section[] = [];
  const visit = (obj: Schema, path: string, description: string) => {
    const section: Section = { path, description, rows: [] };
    sections.push(section);
    const nested: Array<() => void> = [];
    for (const [key, field] of Object.entries(obj._zod.def.shape ?? {})) {
      const fieldPath = path ? `${path}.${key}` : key;
      const u = unwrap(field);
      if (!u.description) throw new Error(`gen-config-doc: ${fieldPath} has no description; add .describe("...") in src/config/schema.ts`);
      if (isObject(u.core)) {
        nested.push(() => visit(u.core, fieldPath, u.description));
        continue;
      }
      section.rows.push({ path: fieldPath, type: typeName(field), default: formatDefault(u), description: u.description });
      if (u.core._zod.def.type === "array") {
        const el = unwrap(u.core._zod.def.element!).core;
        if (isObject(el)) nested.push(() => visit(el, `${fieldPath}[]`, `One entry of \`${fieldPath}\`.`));
      }
    }
    for (const n of nested) n();
  };
  visit(asSchema(root), "", "");
  return sections;
}

const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\n+/g, " ");
const code = (s: string) => "`" + s + "`";

export function renderConfigDoc(root: z.ZodType = configSchema): string {
  const out: string[] = [
    "# Config reference",
    "",
    "<!-- Generated from src/config/schema.ts by scripts/gen-config-doc.ts. Do not edit by hand: run `npm run docs:config`. -->",
    "",
    "One YAML file configures both roles (usually `/etc/edgemesh/edgemesh.yaml`):",
    "`edgemesh server` reads the common fields and `server`, `edgemesh agent` the",
    "common fields and `agent`. Unknown fields are errors, reported by their path.",
    "Outside the entries of lists, every field but `psk` has a default, and a",
    "section that is left out takes the defaults of all its fields.",
    "[edgemesh.yaml.example](../edgemesh.yaml.example) shows every field in place,",
    "with comments.",
    "",
    "Defaults are written as JSON (which is also YAML). A path ending in `[]` is",
    "one entry of a list.",
  ];
  for (const s of collectSections(root)) {
    out.push("", s.path ? `## ${code(s.path)}` : "## Common fields", "");
    if (s.description) out.push(s.description, "");
    if (s.rows.length === 0) {
      out.push("Only the sections below.");
      continue;
    }
    out.push("| field | type | default | description |", "|---|---|---|---|");
    for (const r of s.rows) out.push(`| ${code(r.path)} | ${cell(r.type)} | ${r.default === "required" || r.default === "none" ? r.default : code(cell(r.default))} | ${cell(r.description)} |`);
  }
  return out.join("\n") + "\n";
}

if (import.meta.main) {
  writeFileSync(CONFIG_DOC_PATH, renderConfigDoc());
  console.log(`wrote ${CONFIG_DOC_PATH}`);
}
