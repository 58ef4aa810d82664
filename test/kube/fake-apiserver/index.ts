// Public surface of the fake kube-apiserver used by the kube client tests.
export { FakeApiServer } from "./server.ts";
export type { FakeApiServerOptions, InjectedFailure, KubeObject, PatchType, RecordedRequest } from "./server.ts";
export { FakeApiError, type StatusObject } from "./status.ts";
export { RESOURCES, RESOURCE_NAMES, type ResourceName } from "./resources.ts";
export { findKubectl, kubectl, type KubectlOptions, type KubectlResult } from "./kubectl.ts";
