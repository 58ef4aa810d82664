// Peers tell each other their node name in identify's agentVersion, e.g.
// "edgemesh/0.1.0 (role=agent; node=edge1)". A claim is only believed after
// checking that the peer's ID is the one the secret derives from that name.
export interface Claim {
  role: "agent" | "server";
  nodeName: string;
  /** identity v2: an agent whose certificate has the relay role (it may serve reservations) */
  relay?: boolean;
}

export function formatAgentVersion(version: string, claim: Claim): string {
  return `edgemesh/${version} (role=${claim.role}; node=${claim.nodeName})`;
}

export function parseAgentVersion(s: string | undefined): Claim | undefined {
  if (!s) return undefined;
  const m = /^edgemesh\/\S+ \(role=(agent|server); node=([a-z0-9][-a-z0-9.]{0,252})\)$/.exec(s);
  if (!m) return undefined;
  return { role: m[1] as Claim["role"], nodeName: m[2]! };
}
