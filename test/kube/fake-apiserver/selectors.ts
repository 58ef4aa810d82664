// Label and field selectors in the apiserver's query-string syntax, enough for
// informers that filter EndpointSlices by kubernetes.io/service-name.

export type LabelOp = "exists" | "!exists" | "=" | "!=" | "in" | "notin" | "gt" | "lt";

export interface LabelRequirement {
  key: string;
  op: LabelOp;
  values: string[];
}

const KEY = String.raw`[A-Za-z0-9][-A-Za-z0-9_./]*`;
const VALUE = String.raw`[-A-Za-z0-9_.]*`;
const RE_NOT_EXISTS = new RegExp(`^!\\s*(${KEY})$`);
const RE_EXISTS = new RegExp(`^(${KEY})$`);
const RE_SET = new RegExp(`^(${KEY})\\s+(in|notin)\\s*\\(([^()]*)\\)$`);
const RE_EQ = new RegExp(`^(${KEY})\\s*(==|=|!=)\\s*(${VALUE})$`);
const RE_CMP = new RegExp(`^(${KEY})\\s*(>|<)\\s*(\\d+)$`);

/** Splits on commas that are not inside `in (...)` value lists. */
function splitTopLevel(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of s) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      parts.push(cur);
      cur = "";
    } else cur += ch;
  }
  parts.push(cur);
  return parts;
}

/** Throws with the apiserver's wording on a malformed selector (answered as 400). */
export function parseLabelSelector(selector: string): LabelRequirement[] {
  if (selector.trim() === "") return [];
  return splitTopLevel(selector).map((raw) => {
    const part = raw.trim();
    let m: RegExpMatchArray | null;
    if ((m = part.match(RE_NOT_EXISTS))) return { key: m[1]!, op: "!exists", values: [] };
    if ((m = part.match(RE_SET))) {
      const values = m[3]!.split(",").map((v) => v.trim());
      if (values.some((v) => !/^[-A-Za-z0-9_.]*$/.test(v))) break_(part);
      return { key: m[1]!, op: m[2] as "in" | "notin", values };
    }
    if ((m = part.match(RE_EQ))) return { key: m[1]!, op: m[2] === "!=" ? "!=" : "=", values: [m[3]!] };
    if ((m = part.match(RE_CMP))) return { key: m[1]!, op: m[2] === ">" ? "gt" : "lt", values: [m[3]!] };
    if ((m = part.match(RE_EXISTS))) return { key: m[1]!, op: "exists", values: [] };
    return break_(part);
  });
}

function break_(part: string): never {
  throw new Error(`unable to parse requirement: found '${part}', expected: identifier or operator`);
}

export function matchLabels(reqs: LabelRequirement[], labels: Record<string, string> | undefined): boolean {
  for (const r of reqs) {
    const has = labels !== undefined && Object.hasOwn(labels, r.key);
    const v = has ? labels[r.key] : undefined;
    switch (r.op) {
      case "exists":
        if (!has) return false;
        break;
      case "!exists":
        if (has) return false;
        break;
      case "=":
        if (v !== r.values[0]) return false;
        break;
      case "!=":
        // A missing label satisfies != in Kubernetes semantics.
        if (v === r.values[0]) return false;
        break;
      case "in":
        if (v === undefined || !r.values.includes(v)) return false;
        break;
      case "notin":
        if (v !== undefined && r.values.includes(v)) return false;
        break;
      case "gt":
      case "lt": {
        const n = Number(v);
        if (v === undefined || !Number.isInteger(n)) return false;
        if (r.op === "gt" ? !(n > Number(r.values[0])) : !(n < Number(r.values[0]))) return false;
        break;
      }
    }
  }
  return true;
}

export interface FieldRequirement {
  field: string;
  negate: boolean;
  value: string;
}

/** `allowed` mirrors the per-resource field labels the real apiserver indexes. */
export function parseFieldSelector(selector: string, allowed: readonly string[]): FieldRequirement[] {
  if (selector.trim() === "") return [];
  return selector.split(",").map((raw) => {
    const m = raw.trim().match(/^([^=!\s]+)\s*(==|=|!=)\s*(.*)$/);
    if (!m) throw new Error(`invalid selector: '${selector}'; can't understand '${raw}'`);
    if (!allowed.includes(m[1]!)) throw new Error(`field label not supported: ${m[1]}`);
    return { field: m[1]!, negate: m[2] === "!=", value: m[3]!.trim() };
  });
}

export function matchFields(reqs: FieldRequirement[], obj: Record<string, unknown>): boolean {
  for (const r of reqs) {
    let cur: unknown = obj;
    for (const seg of r.field.split(".")) cur = cur !== null && typeof cur === "object" ? (cur as Record<string, unknown>)[seg] : undefined;
    const actual = cur === undefined || cur === null ? "" : String(cur);
    if ((actual === r.value) === r.negate) return false;
  }
  return true;
}
