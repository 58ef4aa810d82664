// What this agent's NAT does with its mappings, learnt from what two or more
// tunnel servers (or relay agents) observe (identify's observedAddr), as
// `tailscale netcheck` does. Our dials to them all leave from the listening
// port, so a NAT that keeps one mapping for that port whatever the
// destination (endpoint-independent) shows every observer the same public
// address; one that maps each destination anew (endpoint-dependent, e.g.
// `--random-fully` or carrier-grade NATs) shows them different ports, and
// TCP hole punching through it cannot work.

export type NatMapping = "endpoint-independent" | "endpoint-dependent" | "unknown";
export const NAT_MAPPINGS: readonly NatMapping[] = ["endpoint-independent", "endpoint-dependent", "unknown"];

export interface NatReport {
  mapping: NatMapping;
  /** one line for status: how we know */
  detail: string;
  /** each observer's view of us: "host:port" */
  observed: Array<{ observer: string; address: string }>;
}

/**
 * Classifies from the observations (one per observer). One observer cannot
 * tell: a preserved port hints at an endpoint-independent NAT (or none), but
 * only a second observer shows it.
 */
export function classifyNat(observed: Array<{ observer: string; address: string }>, listenPort: number): NatReport {
  const addrs = new Set(observed.map((o) => o.address));
  if (observed.length === 0) return { mapping: "unknown", detail: "no tunnel server has told us our public address yet", observed };
  if (observed.length === 1) {
    const port = Number(observed[0]!.address.slice(observed[0]!.address.lastIndexOf(":") + 1));
    const hint = port === listenPort ? "port preserved" : `port changed from ${listenPort}`;
    return { mapping: "unknown", detail: `one observer (${hint}): a second tunnel server or relay is needed to tell`, observed };
  }
  if (addrs.size === 1) return { mapping: "endpoint-independent", detail: `${observed.length} observers see the same address ${[...addrs][0]}`, observed };
  return {
    mapping: "endpoint-dependent",
    detail: `${observed.length} observers see ${addrs.size} different addresses: the NAT maps each destination anew, hole punching cannot work through it`,
    observed,
  };
}
