// Public entry point of the NAT lab. Test files import from here; the bun:test
// helper lives in ./bun-test.ts so benchmarks and the demo can use the lab
// without pulling in the test runner.
export {
  ADDRESS_PLAN,
  Lab,
  LabCreateError,
  NS_FAMILY,
  cleanupStaleLabs,
  isAlive,
  listNamespaces,
  makeAddressPlan,
  preflight,
  tool,
  withLab,
  type AddressPlan,
  type BuildStep,
  type HostRef,
  type HttpResponse,
  type LabHost,
  type LabHosts,
  type LabOptions,
  type LanSegment,
  type NatHost,
  type NatMapping,
  type GatewayBehaviour,
  type Segment,
} from "./lab";
export { LabProcess, run, runOrThrow, type ExitStatus, type RunOptions, type RunResult, type SpawnOptions, type StreamName } from "./proc";
export { WaitTimeoutError, waitFor, type WaitForOptions } from "./wait";

/** Absolute path of the running bun binary, for spawning bun scripts inside namespaces. */
export const BUN: string = process.execPath;
