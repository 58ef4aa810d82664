// metav1.Status bodies exactly as kube-apiserver words them, so clients can be
// tested against real reasons and messages.

import { apiVersionOf, type ResourceDef } from "./resources.ts";

export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: StatusCause[];
  retryAfterSeconds?: number;
}

export interface StatusObject {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Failure" | "Success";
  message?: string;
  reason?: string;
  details?: StatusDetails;
  code: number;
}

/** An API failure carried to the HTTP layer (or thrown to test code by the helper API). */
export class FakeApiError extends Error {
  constructor(readonly status: StatusObject) {
    super(status.message ?? status.reason ?? `HTTP ${status.code}`);
  }
  get code(): number {
    return this.status.code;
  }
}

export function failure(code: number, reason: string, message: string, details?: StatusDetails): StatusObject {
  const s: StatusObject = { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code };
  if (details) s.details = details;
  return s;
}

export const fail = (code: number, reason: string, message: string, details?: StatusDetails): FakeApiError =>
  new FakeApiError(failure(code, reason, message, details));

/** "services" for core kinds, "endpointslices.discovery.k8s.io" for grouped ones, as in real messages. */
export const qualified = (r: ResourceDef): string => (r.group ? `${r.name}.${r.group}` : r.name);

function details(r: ResourceDef, name: string): StatusDetails {
  return r.group ? { name, group: r.group, kind: r.name } : { name, kind: r.name };
}

export const notFound = (r: ResourceDef, name: string) => fail(404, "NotFound", `${qualified(r)} "${name}" not found`, details(r, name));

export const alreadyExists = (r: ResourceDef, name: string) =>
  fail(409, "AlreadyExists", `${qualified(r)} "${name}" already exists`, details(r, name));

export const conflict = (r: ResourceDef, name: string) =>
  fail(
    409,
    "Conflict",
    `Operation cannot be fulfilled on ${qualified(r)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    details(r, name),
  );

export function invalid(r: ResourceDef, name: string, field: string, cause: string, detail: string): FakeApiError {
  const message = `${field}: ${detail}`;
  const d: StatusDetails = { name, kind: r.kind, causes: [{ reason: cause, message, field }] };
  if (r.group) d.group = r.group;
  return fail(422, "Invalid", `${r.kind} "${name}" is invalid: ${message}`, d);
}

export const badRequest = (message: string) => fail(400, "BadRequest", message);

export const methodNotAllowed = () => fail(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {});

export const pathNotFound = () => fail(404, "NotFound", "the server could not find the requested resource", {});

export function tooLargeRv(requested: number, current: number): FakeApiError {
  return fail(504, "Timeout", `Too large resource version: ${requested}, current: ${current}`, {
    causes: [{ reason: "ResourceVersionTooLarge", message: "Too large resource version" }],
    retryAfterSeconds: 1,
  });
}

export function forbidden(r: ResourceDef, verb: string, user: string, ns?: string, name?: string): FakeApiError {
  const subject = name ? `${qualified(r)} "${name}"` : qualified(r);
  const scope = ns ? `in the namespace "${ns}"` : "at the cluster scope";
  const d: StatusDetails = name ? details(r, name) : r.group ? { group: r.group, kind: r.name } : { kind: r.name };
  return fail(
    403,
    "Forbidden",
    `${subject} is forbidden: User "${user}" cannot ${verb} resource "${r.name}" in API group "${r.group}" ${scope}`,
    d,
  );
}

export function success(r: ResourceDef, name: string, uid: string): Record<string, unknown> {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Success",
    details: { ...details(r, name), uid },
  };
}

export const typeMeta = (r: ResourceDef) => ({ kind: r.kind, apiVersion: apiVersionOf(r) });
