// Just enough OpenAPI v3 for kubectl. Since 1.27 `kubectl apply/create`
// validates with --validate=strict, which only trusts server-side field
// validation after finding a `fieldValidation` query parameter on the kind's
// PATCH operation in /openapi/v3; without that document it tries /openapi/v2
// and fails with "failed to download openapi". No component schemas are
// published, so kubectl computes strategic merge patches from its compiled-in
// types, exactly as it does against servers whose schemas it cannot use.

import { apiVersionOf, type ResourceDef } from "./resources.ts";

const gvPath = (d: ResourceDef) => (d.group ? `apis/${d.group}/${d.version}` : `api/${d.version}`);

function op(d: ResourceDef, action: string, params: string[]): Record<string, unknown> {
  return {
    operationId: `${action}${d.kind}`,
    "x-kubernetes-action": action,
    "x-kubernetes-group-version-kind": { group: d.group, version: d.version, kind: d.kind },
    parameters: params.map((name) => ({ name, in: "query", schema: { type: "string", uniqueItems: true } })),
    responses: { "200": { description: "OK" } },
  };
}

/** One group-version's document, as served at /openapi/v3/api/v1 or /openapi/v3/apis/{g}/{v}. */
export function openApiDocument(defs: ResourceDef[], gitVersion: string): Record<string, unknown> {
  const paths: Record<string, unknown> = {};
  const write = ["dryRun", "fieldManager", "fieldValidation"];
  for (const d of defs) {
    const base = `/${gvPath(d)}${d.namespaced ? "/namespaces/{namespace}" : ""}/${d.name}`;
    paths[base] = {
      get: op(d, "list", ["labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "resourceVersionMatch", "watch", "allowWatchBookmarks", "timeoutSeconds"]),
      post: op(d, "post", write),
      ...(d.verbs.includes("deletecollection") ? { delete: op(d, "deletecollection", ["labelSelector", "fieldSelector"]) } : {}),
    };
    paths[`${base}/{name}`] = {
      get: op(d, "get", []),
      put: op(d, "put", write),
      patch: op(d, "patch", [...write, "force"]),
      delete: op(d, "delete", ["dryRun", "gracePeriodSeconds", "propagationPolicy"]),
    };
    for (const sub of d.subresources) {
      paths[`${base}/{name}/${sub}`] = { get: op(d, "get", []), put: op(d, "put", write), patch: op(d, "patch", [...write, "force"]) };
    }
  }
  return { openapi: "3.0.0", info: { title: "Kubernetes", version: gitVersion }, paths, components: { schemas: {} } };
}

/** The /openapi/v3 index: one entry per served group-version, keyed like the real server. */
export function openApiIndex(defs: ResourceDef[], hashOf: (gv: string) => string): Record<string, unknown> {
  const paths: Record<string, { serverRelativeURL: string }> = {};
  for (const d of defs) {
    const p = gvPath(d);
    paths[p] = { serverRelativeURL: `/openapi/v3/${p}?hash=${hashOf(apiVersionOf(d))}` };
  }
  return { paths };
}

export { gvPath };

/** Protobuf length-delimited field (wire type 2); field numbers here are all < 16. */
function field(num: number, payload: Uint8Array): Uint8Array {
  const len: number[] = [];
  let n = payload.length;
  do {
    len.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
    n >>>= 7;
  } while (n > 0);
  return Uint8Array.from([(num << 3) | 2, ...len, ...payload]);
}

/**
 * An empty Swagger 2.0 document. Older kubectl (e.g. Debian's 1.20) validates
 * and computes patches from /openapi/v2, fetched as gnostic protobuf only; a
 * document without definitions makes it skip validation and fall back to its
 * compiled-in types instead of failing with NotFound.
 */
export function openApiV2(gitVersion: string, protobuf: boolean): Uint8Array | string {
  if (!protobuf) return JSON.stringify({ swagger: "2.0", info: { title: "Kubernetes", version: gitVersion }, paths: {}, definitions: {} });
  const te = new TextEncoder();
  const info = new Uint8Array([...field(1, te.encode("Kubernetes")), ...field(2, te.encode(gitVersion))]);
  // Document.swagger = 1, Document.info = 2
  return new Uint8Array([...field(1, te.encode("2.0")), ...field(2, info)]);
}
