// Wires identity v2 into a tunnel node (either role): serve and present
// certificates on every connection, record verified peers in the
// membership, close connections whose peer cannot show a valid one.
import type { Connection } from "@libp2p/interface";
import type { Logger } from "../log.ts";
import type { NodeIdentity } from "../trust/load.ts";
import type { Membership } from "./membership.ts";
import type { TunnelNode } from "./node.ts";
import { CertBook, presentCertificate, serveCertProtocols, type ExchangeEvents } from "./certs.ts";

export async function installCertIdentity(node: TunnelNode, identity: NodeIdentity, membership: Membership, log: Logger): Promise<CertBook> {
  const book = new CertBook(identity.caPublicKey, identity.cert);
  const refusedLogged = new Map<string, number>();
  const events: ExchangeEvents = {
    log,
    onVerified: (conn, cert) => membership.recordCertificate(conn.remotePeer, { role: cert.role === "server" ? "server" : "agent", nodeName: cert.nodeName }),
    onRefused: (conn, reason) => {
      const peer = conn.remotePeer.toString();
      // one line per peer and reason a minute: a node retrying must not flood the log
      const key = `${peer} ${reason}`;
      const last = refusedLogged.get(key) ?? 0;
      if (Date.now() - last > 60_000) {
        refusedLogged.set(key, Date.now());
        if (refusedLogged.size > 1000) refusedLogged.delete(refusedLogged.keys().next().value!);
        log.warn("peer refused: no valid certificate", { peer, remote: conn.remoteAddr.toString(), reason });
      }
      membership.forget(conn.remotePeer);
      book.forget(peer);
      conn.abort(new Error(`edgemesh: ${reason}`));
    },
  };
  await serveCertProtocols(node as never, book, events);
  const present = (conn: Connection) => void presentCertificate(conn, book, events);
  node.addEventListener("connection:open", (e) => present(e.detail));
  return book;
}
