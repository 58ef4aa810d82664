// Who is a member of the mesh. pnet already keeps out anyone without the
// secret; this keeps a secret holder from posing as another node. Identity
// v1: a peer's name (claimed in identify) is believed only if the secret
// derives the peer's ID from it. Identity v2 (`certificates`): names and roles
// come only from verified certificates (tunnel/certs.ts); identify's claim is
// not read. Unverified peers get no relay reservation, no relayed hop and no
// proxied stream.
import type { Connection, ConnectionGater, PeerId } from "@libp2p/interface";
import type { Logger } from "../log.ts";
import { parseAgentVersion, type Claim } from "./agent-version.ts";
import type { Identities } from "./identity.ts";

export interface IdentifyResult {
  peerId: PeerId;
  agentVersion?: string;
  connection: Connection;
}

export class Membership {
  private readonly verified = new Map<string, Claim>();
  private readonly waiters = new Map<string, Array<(c: Claim | undefined) => void>>();
  /** connections per peer the gater allows; 0 = no cap */
  maxConnectionsPerPeer = 0;
  countConnections: (peer: PeerId) => number = () => 0;

  constructor(
    private readonly ids: Identities,
    private readonly log: Logger,
    /** identity v2: claims come from certificates only */
    readonly certificates = false,
  ) {}

  /** identity v2: a peer's certificate verified on a connection */
  recordCertificate(peer: PeerId, claim: Claim): void {
    const key = peer.toString();
    if (!this.verified.has(key)) this.log.debug("peer verified by certificate", { peer: key, node: claim.nodeName, role: claim.role });
    this.verified.set(key, claim);
    this.resolve(key, claim);
  }

  /** identity v2: a peer whose certificate failed, or was revoked, is no member */
  forget(peer: PeerId): void {
    this.verified.delete(peer.toString());
    this.resolve(peer.toString(), undefined);
  }

  /** a known claim, or undefined */
  claim(peer: PeerId): Claim | undefined {
    return this.verified.get(peer.toString());
  }

  /** learn a name from identify; close the connection when the claim is false */
  async onIdentify(r: IdentifyResult): Promise<void> {
    const key = r.peerId.toString();
    if (this.certificates) {
      // v2: the certificate decides; a peer that calls itself something else is lying
      const said = parseAgentVersion(r.agentVersion);
      const cert = said && (await this.waitVerified(r.peerId, 10_000));
      if (said && cert && (said.nodeName !== cert.nodeName || said.role !== cert.role)) {
        this.log.warn("peer refused: it calls itself another node than its certificate", { peer: key, claims: `${said.role} ${said.nodeName}`, certificate: `${cert.role} ${cert.nodeName}` });
        // only this connection: the key's rightful holder may be connected too
        r.connection.abort(new Error("edgemesh: claimed name differs from certificate"));
      }
      return;
    }
    const claim = parseAgentVersion(r.agentVersion);
    if (!claim) {
      this.log.warn("peer refused: not an edgemesh node", { peer: key, agent: r.agentVersion ?? "" });
      await r.connection.close().catch(() => {});
      return;
    }
    if (!(await this.ids.matches(r.peerId, claim.nodeName))) {
      this.log.warn("peer refused: its ID is not the one the mesh secret gives its claimed name", { peer: key, claimed: claim.nodeName });
      this.resolve(key, undefined);
      r.connection.abort(new Error("edgemesh: identity does not match claimed node name"));
      return;
    }
    if (!this.verified.has(key)) this.log.debug("peer verified", { peer: key, node: claim.nodeName, role: claim.role });
    this.verified.set(key, claim);
    this.resolve(key, claim);
  }

  /** record a peer whose name we already know (we dialled its derived ID) */
  async trust(peer: PeerId, claim: Claim): Promise<boolean> {
    // v2: a name is only ever learnt from the peer's own certificate
    if (this.certificates) return (await this.waitVerified(peer, 10_000))?.nodeName === claim.nodeName;
    if (!(await this.ids.matches(peer, claim.nodeName))) return false;
    this.verified.set(peer.toString(), claim);
    this.resolve(peer.toString(), claim);
    return true;
  }

  /** waits for identify to verify a peer, bounded by timeoutMs */
  waitVerified(peer: PeerId, timeoutMs = 5000): Promise<Claim | undefined> {
    const key = peer.toString();
    const known = this.verified.get(key);
    if (known) return Promise.resolve(known);
    return new Promise((resolve) => {
      const list = this.waiters.get(key) ?? [];
      const timer = setTimeout(() => done(undefined), timeoutMs);
      const done = (c: Claim | undefined) => {
        clearTimeout(timer);
        const cur = this.waiters.get(key)?.filter((f) => f !== done) ?? [];
        if (cur.length) this.waiters.set(key, cur);
        else this.waiters.delete(key);
        resolve(c);
      };
      list.push(done);
      this.waiters.set(key, list);
    });
  }

  private resolve(key: string, c: Claim | undefined): void {
    for (const f of this.waiters.get(key) ?? []) f(c);
  }

  gater(): ConnectionGater {
    return {
      denyInboundUpgradedConnection: async (peer) => {
        if (this.maxConnectionsPerPeer > 0 && this.countConnections(peer) >= this.maxConnectionsPerPeer) {
          this.log.warn("connection refused: too many connections from peer", { peer: peer.toString(), max: this.maxConnectionsPerPeer });
          return true;
        }
        return false;
      },
      denyInboundRelayReservation: async (peer) => {
        const c = await this.waitVerified(peer);
        if (!c) this.log.warn("relay reservation refused: peer not verified as a mesh node", { peer: peer.toString() });
        return c === undefined;
      },
      denyOutboundRelayedConnection: async (source, target) => {
        const [a, b] = await Promise.all([this.waitVerified(source), this.waitVerified(target)]);
        if (!a || !b) this.log.warn("relay hop refused: peer not verified", { source: source.toString(), target: target.toString() });
        return !a || !b;
      },
    };
  }
}
