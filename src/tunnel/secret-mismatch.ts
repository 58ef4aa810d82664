// Connections that failed the mesh-secret check (privnet key confirmation).
// The layers above report such a failure in their own words ("Encryption
// failed", a closed stream), so a dial is explained by what was recorded here
// for its address while it ran; and each side logs the remote once a minute,
// so a server sees which host holds the wrong psk.
import type { Logger } from "../log.ts";

export const SECRET_MISMATCH = "mesh secret mismatch: the other end has a different psk, or is not an edgemesh node";

const LOG_EVERY_MS = 60_000;
const MAX_REMEMBERED = 1024;
/** how long a failed dial waits for a mismatch to be recorded before naming another cause */
const LATE_CONFIRMATION_MS = 150;

export type Direction = "inbound" | "outbound";

export class SecretMismatches {
  /** "host:port" → when a mismatch with it last happened */
  private readonly seen = new Map<string, number>();
  /** outbound: "host:port" (a service we dial); inbound: host (its ports are ephemeral) → when we last logged it */
  private readonly logged = new Map<string, number>();

  constructor(
    private readonly log: Pick<Logger, "warn">,
    private readonly now = Date.now,
  ) {}

  record(remote: string, direction: Direction): void {
    const t = this.now();
    bounded(this.seen).set(remote, t);
    const key = direction === "outbound" ? remote : remote.replace(/:\d+$/, "");
    if (t - (this.logged.get(key) ?? -Infinity) < LOG_EVERY_MS) return;
    bounded(this.logged).set(key, t);
    const who = direction === "inbound" ? "a peer connecting from" : "the peer at";
    this.log.warn(`${SECRET_MISMATCH} (${who} ${remote}); compare sha256sum of the psk files`, { remote, direction });
  }

  /** whether a connection to `remote` ("host:port") failed the check at or after `since` */
  since(remote: string, since: number): boolean {
    return (this.seen.get(remote) ?? -Infinity) >= since;
  }

  /**
   * since(), for a dial that just failed: the remote's confirmation may still
   * be on its way behind the error the upper layers saw first (they fail on
   * the close that follows it), so it gets LATE_CONFIRMATION_MS to arrive.
   */
  async failedSince(remotes: string[], since: number): Promise<boolean> {
    if (remotes.some((r) => this.since(r, since))) return true;
    await new Promise((r) => setTimeout(r, LATE_CONFIRMATION_MS));
    return remotes.some((r) => this.since(r, since));
  }
}

function bounded<K, V>(m: Map<K, V>): Map<K, V> {
  if (m.size >= MAX_REMEMBERED) m.delete(m.keys().next().value as K);
  return m;
}
