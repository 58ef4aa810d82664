// The three PATCH dialects the apiserver accepts: JSON merge patch (RFC 7386),
// JSON patch (RFC 6902) and strategic merge patch, the one kubectl apply sends
// for built-in kinds. Inputs are never mutated: stored objects are shared with
// history and open watches.

export type Obj = Record<string, unknown>;

export const isObj = (v: unknown): v is Obj => v !== null && typeof v === "object" && !Array.isArray(v);

/** Raised for a patch that cannot be applied; answered as 422/400 by the server. */
export class PatchError extends Error {}

export function jsonMergePatch(target: unknown, patch: unknown): unknown {
  if (!isObj(patch)) return patch;
  const out: Obj = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = jsonMergePatch(out[k], v);
  }
  return out;
}

function unescapePointer(seg: string): string {
  return seg.replace(/~1/g, "/").replace(/~0/g, "~");
}

function parsePointer(ptr: string): string[] {
  if (ptr === "") return [];
  if (!ptr.startsWith("/")) throw new PatchError(`invalid JSON pointer: ${ptr}`);
  return ptr.slice(1).split("/").map(unescapePointer);
}

/** Copy-on-write walk to the parent of `path`; returns the new root and the parent container. */
function cowParent(root: unknown, path: string[]): { root: unknown; parent: Obj | unknown[] } {
  const newRoot = Array.isArray(root) ? [...root] : isObj(root) ? { ...root } : root;
  let cur: unknown = newRoot;
  for (const seg of path.slice(0, -1)) {
    if (Array.isArray(cur)) {
      const i = Number(seg);
      if (!Number.isInteger(i) || i < 0 || i >= cur.length) throw new PatchError(`path not found: ${seg}`);
      const child = cur[i];
      cur[i] = Array.isArray(child) ? [...child] : isObj(child) ? { ...child } : child;
      cur = cur[i];
    } else if (isObj(cur)) {
      if (!(seg in cur)) throw new PatchError(`path not found: ${seg}`);
      const child = cur[seg];
      cur[seg] = Array.isArray(child) ? [...child] : isObj(child) ? { ...child } : child;
      cur = cur[seg];
    } else throw new PatchError(`path not found: ${seg}`);
  }
  if (!Array.isArray(cur) && !isObj(cur)) throw new PatchError("path parent is not a container");
  return { root: newRoot, parent: cur };
}

function getAt(root: unknown, path: string[]): unknown {
  let cur = root;
  for (const seg of path) {
    if (Array.isArray(cur)) cur = cur[Number(seg)];
    else if (isObj(cur)) {
      if (!(seg in cur)) throw new PatchError(`path not found: /${path.join("/")}`);
      cur = cur[seg];
    } else throw new PatchError(`path not found: /${path.join("/")}`);
    if (cur === undefined) throw new PatchError(`path not found: /${path.join("/")}`);
  }
  return cur;
}

function addAt(root: unknown, path: string[], value: unknown): unknown {
  if (path.length === 0) return value;
  const { root: r, parent } = cowParent(root, path);
  const last = path[path.length - 1]!;
  if (Array.isArray(parent)) {
    const i = last === "-" ? parent.length : Number(last);
    if (!Number.isInteger(i) || i < 0 || i > parent.length) throw new PatchError(`index out of range: ${last}`);
    parent.splice(i, 0, value);
  } else parent[last] = value;
  return r;
}

function removeAt(root: unknown, path: string[]): unknown {
  if (path.length === 0) throw new PatchError("cannot remove the root");
  const { root: r, parent } = cowParent(root, path);
  const last = path[path.length - 1]!;
  if (Array.isArray(parent)) {
    const i = Number(last);
    if (!Number.isInteger(i) || i < 0 || i >= parent.length) throw new PatchError(`index out of range: ${last}`);
    parent.splice(i, 1);
  } else {
    if (!(last in parent)) throw new PatchError(`path not found: /${path.join("/")}`);
    delete parent[last];
  }
  return r;
}

export function jsonPatch(target: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw new PatchError("a JSON patch must be an array of operations");
  let doc = target;
  for (const op of ops) {
    if (!isObj(op) || typeof op.op !== "string" || typeof op.path !== "string") throw new PatchError("malformed JSON patch operation");
    const path = parsePointer(op.path);
    switch (op.op) {
      case "add":
        doc = addAt(doc, path, op.value);
        break;
      case "remove":
        doc = removeAt(doc, path);
        break;
      case "replace":
        getAt(doc, path);
        doc = addAt(removeAt(doc, path), path, op.value);
        break;
      case "move":
      case "copy": {
        if (typeof op.from !== "string") throw new PatchError(`${op.op} needs "from"`);
        const from = parsePointer(op.from);
        const value = getAt(doc, from);
        if (op.op === "move") doc = removeAt(doc, from);
        doc = addAt(doc, path, structuredClone(value));
        break;
      }
      case "test":
        if (JSON.stringify(getAt(doc, path)) !== JSON.stringify(op.value)) throw new PatchError(`test failed at ${op.path}`);
        break;
      default:
        throw new PatchError(`unknown JSON patch op ${op.op}`);
    }
  }
  return doc;
}

/** How a list at a dotted field path (list indices elided) merges under SMP. */
export interface ListStrategy {
  mergeKey?: string;
  /** Lists of scalars with patchStrategy=merge (e.g. finalizers): union. */
  primitiveMerge?: boolean;
}
export type SmpSchema = Readonly<Record<string, ListStrategy>>;

const DELETE = Symbol("delete");

function stripDirectives(v: unknown): unknown {
  if (Array.isArray(v)) return v.filter((i) => !(isObj(i) && i.$patch === "delete")).map(stripDirectives);
  if (!isObj(v)) return v;
  const out: Obj = {};
  for (const [k, val] of Object.entries(v)) {
    if (k.startsWith("$")) continue;
    if (val === null) continue;
    out[k] = stripDirectives(val);
  }
  return out;
}

function orderBy(items: unknown[], order: unknown, keyOf: (i: unknown) => unknown): unknown[] {
  if (!Array.isArray(order)) return items;
  const rank = (i: unknown) => {
    const k = keyOf(i);
    const idx = order.findIndex((o) => (isObj(o) ? JSON.stringify(keyOf(o)) === JSON.stringify(k) : o === k));
    return idx < 0 ? order.length : idx;
  };
  return items.map((item, pos) => ({ item, pos, r: rank(item) })).sort((a, b) => a.r - b.r || a.pos - b.pos).map((x) => x.item);
}

function mergeList(orig: unknown, patch: unknown[], path: string, schema: SmpSchema, order: unknown): unknown[] {
  const strategy = schema[path];
  // Lists without a patch strategy are atomic: the patch's list replaces the old one.
  if (!strategy || (!strategy.mergeKey && !strategy.primitiveMerge)) return stripDirectives(patch) as unknown[];
  const base = Array.isArray(orig) ? orig : [];
  if (strategy.primitiveMerge) {
    const out = [...base];
    for (const v of patch) if (!out.includes(v)) out.push(v);
    return orderBy(out, order, (i) => i);
  }
  const mk = strategy.mergeKey!;
  if (patch.some((i) => isObj(i) && i.$patch === "replace")) {
    return patch.filter((i) => !(isObj(i) && i.$patch === "replace")).map(stripDirectives);
  }
  const out = [...base];
  for (const item of patch) {
    if (!isObj(item)) throw new PatchError(`list ${path} with merge key ${mk} must hold objects`);
    const idx = out.findIndex((o) => isObj(o) && o[mk] === item[mk]);
    if (item.$patch === "delete") {
      if (idx >= 0) out.splice(idx, 1);
      continue;
    }
    if (idx >= 0) out[idx] = mergeMap(out[idx] as Obj, item, path, schema);
    else out.push(stripDirectives(item));
  }
  return orderBy(out, order, (i) => (isObj(i) ? i[mk] : i));
}

function mergeMap(orig: Obj, patch: Obj, path: string, schema: SmpSchema): Obj | typeof DELETE {
  if (patch.$patch === "delete") return DELETE;
  if (patch.$patch === "replace") return stripDirectives(patch) as Obj;
  const out: Obj = { ...orig };
  for (const [k, v] of Object.entries(patch)) {
    if (k === "$patch" || k === "$retainKeys" || k.startsWith("$setElementOrder/")) continue;
    if (k.startsWith("$deleteFromPrimitiveList/")) {
      const field = k.slice("$deleteFromPrimitiveList/".length);
      const cur = out[field];
      if (Array.isArray(cur) && Array.isArray(v)) out[field] = cur.filter((x) => !v.includes(x));
      continue;
    }
    if (v === null) {
      delete out[k];
      continue;
    }
    const child = path ? `${path}.${k}` : k;
    if (Array.isArray(v)) out[k] = mergeList(out[k], v, child, schema, patch[`$setElementOrder/${k}`]);
    else if (isObj(v)) {
      const merged = mergeMap(isObj(out[k]) ? (out[k] as Obj) : {}, v, child, schema);
      if (merged === DELETE) delete out[k];
      else out[k] = merged;
    } else out[k] = v;
  }
  // Reordering without content change arrives as a bare $setElementOrder.
  for (const [k, order] of Object.entries(patch)) {
    if (!k.startsWith("$setElementOrder/")) continue;
    const field = k.slice("$setElementOrder/".length);
    if (field in patch || !Array.isArray(out[field])) continue;
    const s = schema[path ? `${path}.${field}` : field];
    out[field] = orderBy(out[field] as unknown[], order, (i) => (s?.mergeKey && isObj(i) ? i[s.mergeKey] : i));
  }
  if (Array.isArray(patch.$retainKeys)) {
    for (const k of Object.keys(out)) if (!patch.$retainKeys.includes(k)) delete out[k];
  }
  return out;
}

export function strategicMergePatch(target: Obj, patch: unknown, schema: SmpSchema): Obj {
  if (!isObj(patch)) throw new PatchError("a strategic merge patch must be a JSON object");
  const merged = mergeMap(target, patch, "", schema);
  if (merged === DELETE) throw new PatchError("cannot delete the whole object with $patch: delete");
  return merged;
}

/**
 * The deletions implied by a manager's new applied configuration relative to its
 * previous one, as a strategic merge patch: fields it applied before and no longer
 * applies are removed, the rest is left to whoever else set it. This is the core of
 * server-side apply's ownership semantics, without conflict detection.
 */
export function applyRemovals(prev: Obj, next: Obj, schema: SmpSchema, path = ""): Obj {
  const out: Obj = {};
  for (const [k, pv] of Object.entries(prev)) {
    const child = path ? `${path}.${k}` : k;
    if (!(k in next)) {
      out[k] = null;
      continue;
    }
    const nv = next[k];
    if (isObj(pv) && isObj(nv)) {
      const sub = applyRemovals(pv, nv, schema, child);
      if (Object.keys(sub).length) out[k] = sub;
    } else if (Array.isArray(pv) && Array.isArray(nv)) {
      const strategy = schema[child];
      if (strategy?.primitiveMerge) {
        const gone = pv.filter((v) => !nv.includes(v));
        if (gone.length) out[`$deleteFromPrimitiveList/${k}`] = gone;
      } else if (strategy?.mergeKey) {
        const mk = strategy.mergeKey;
        const items: Obj[] = [];
        for (const item of pv) {
          if (!isObj(item)) continue;
          const match = nv.find((n) => isObj(n) && n[mk] === item[mk]);
          if (!isObj(match)) items.push({ [mk]: item[mk], $patch: "delete" });
          else {
            const sub = applyRemovals(item, match, schema, child);
            if (Object.keys(sub).length) items.push({ ...sub, [mk]: item[mk] });
          }
        }
        if (items.length) out[k] = items;
      }
    }
  }
  return out;
}
