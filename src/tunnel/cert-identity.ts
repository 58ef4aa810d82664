// Wires identity v2 into a tunnel node (either role): serve and present
// certificates on every connection, record verified peers in the
// membership, close connections whose peer cannot show a valid one, and keep
// the revocation list current (servers read it from a file and hand it to
// every agent; agents keep the newest one they were given).
import { existsSync, mkdirSync, readFileSync, renameSync, watch, writeFileSync, type FSWatcher } from "node:fs";
import { dirname } from "node:path";
import type { Connection } from "@libp2p/interface";
import type { Logger } from "../log.ts";
import { EXPIRY_WARNING_DAYS, type NodeIdentity } from "../trust/load.ts";
import type { IdentityStatus } from "../admin/status.ts";
import { armor, dearmor } from "../trust/armor.ts";
import { openRevocationList, type RevocationList } from "../trust/revocation.ts";
import type { Membership } from "./membership.ts";
import type { TunnelNode } from "./node.ts";
import { CertBook, presentCertificate, serveCertProtocols, type ExchangeEvents } from "./certs.ts";
import { receiveRevocations, REVOCATIONS_PROTOCOL, sendRevocations } from "./revocations.ts";

export interface CertIdentityOptions {
  /** server: the CA-signed list to read, follow and hand out */
  revocationsFile?: string;
  /** agent: where the newest list received is kept across restarts */
  revocationsCache?: string;
  /** a peer was cut off because its certificate is revoked (the server drops its reservation) */
  onRevoked?: (peer: string) => void;
}

export interface CertIdentity {
  book: CertBook;
  /** for /status */
  status(): IdentityStatus;
  stop(): void;
}

const DAY = 86400;
export const daysLeft = (notAfter: number, now = Date.now() / 1000) => Math.floor(((notAfter - now) / DAY) * 10) / 10;

export async function installCertIdentity(node: TunnelNode, identity: NodeIdentity, membership: Membership, log: Logger, o: CertIdentityOptions = {}): Promise<CertIdentity> {
  const book = new CertBook(identity.caPublicKey, identity.cert);
  const refusedLogged = new Map<string, number>();
  const isServer = identity.cert.role === "server";

  const cutOffRevoked = (why: string): void => {
    for (const { peer, cert } of book.revokedPeers()) {
      log.warn("certificate revoked: disconnecting the node", { node: cert.nodeName, serial: String(cert.serial), peer, source: why });
      book.forget(peer);
      const conns = node.getConnections().filter((c) => c.remotePeer.toString() === peer);
      if (conns[0]) membership.forget(conns[0].remotePeer);
      for (const c of conns) c.abort(new Error(`edgemesh: the certificate of ${cert.nodeName} is revoked`));
      o.onRevoked?.(peer);
    }
  };

  /** takes a list if it is newer than ours */
  const adopt = (list: RevocationList, source: string): boolean => {
    if (book.revocations && book.revocations.issuedAt >= list.issuedAt) return false;
    book.revocations = list;
    log.info("revocation list in effect", { entries: list.entries.length, issued: new Date(list.issuedAt * 1000).toISOString(), source });
    cutOffRevoked(source);
    return true;
  };

  const pushTo = (conn: Connection): void => {
    const list = book.revocations;
    if (!list || !isServer) return;
    sendRevocations(conn, list).catch((e) => log.debug("could not hand the revocation list to a peer", { peer: conn.remotePeer.toString(), error: e }));
  };

  const events: ExchangeEvents = {
    log,
    onVerified: (conn, cert) => {
      const first = membership.claim(conn.remotePeer) === undefined;
      membership.recordCertificate(conn.remotePeer, { role: cert.role === "server" ? "server" : "agent", nodeName: cert.nodeName, ...(cert.role === "relay" ? { relay: true } : {}) });
      if (first) pushTo(conn);
    },
    onRefused: (conn, reason, invalid) => {
      const peer = conn.remotePeer.toString();
      // our presentation failed but the peer's own reached us on this connection
      // (both sides present): nothing is wrong with it
      if (!invalid && book.ofPeer(peer) && membership.claim(conn.remotePeer)) {
        log.debug("certificate exchange failed one way; the peer's own was verified", { peer, reason });
        return;
      }
      // one line per peer and reason a minute: a node retrying must not flood the log
      const key = `${peer} ${reason}`;
      const last = refusedLogged.get(key) ?? 0;
      if (Date.now() - last > 60_000) {
        refusedLogged.set(key, Date.now());
        if (refusedLogged.size > 1000) refusedLogged.delete(refusedLogged.keys().next().value!);
        log.warn("peer refused: no valid certificate", { peer, remote: conn.remoteAddr.toString(), reason });
      }
      // a failed certificate makes the key's holder no member; a missing one costs this connection
      if (invalid) {
        membership.forget(conn.remotePeer);
        book.forget(peer);
      }
      conn.abort(new Error(`edgemesh: ${reason}`));
    },
  };

  const listOf = (text: string): Promise<RevocationList> => openRevocationList(dearmor("EDGEMESH REVOCATION LIST", text), identity.caPublicKey);
  let watcher: FSWatcher | undefined;
  let poll: ReturnType<typeof setInterval> | undefined;

  if (isServer && o.revocationsFile) {
    const file = o.revocationsFile;
    // each check reads the file once; an unchanged text is not parsed again
    const exists = existsSync(file);
    let lastText = exists ? readFileSync(file, "utf8") : "";
    if (exists) adopt(await listOf(lastText), file);
    else log.warn("server.revocations does not exist yet; nothing is revoked until it does", { file });
    const reload = async (): Promise<void> => {
      let text = "";
      try {
        text = readFileSync(file, "utf8");
      } catch {
        return;
      }
      if (text === lastText) return;
      lastText = text;
      try {
        if (adopt(await listOf(text), file)) for (const c of node.getConnections()) if (membership.claim(c.remotePeer)) pushTo(c);
      } catch (e) {
        log.warn("server.revocations changed but cannot be used; keeping the previous list", { file, error: e });
      }
    };
    try {
      // the directory: `ca revoke` replaces the file by rename
      watcher = watch(dirname(file), () => void reload());
    } catch (e) {
      log.warn("cannot watch server.revocations; checking it every 2 s", { file, error: e });
    }
    // a watch can miss events (network file systems, editors): poll as well
    poll = setInterval(() => void reload(), 2000);
  }

  if (!isServer && o.revocationsCache && existsSync(o.revocationsCache)) {
    try {
      adopt(await listOf(readFileSync(o.revocationsCache, "utf8")), o.revocationsCache);
    } catch (e) {
      log.warn("the kept revocation list cannot be used; waiting for a server's", { file: o.revocationsCache, error: e });
    }
  }

  await serveCertProtocols(node as never, book, events);
  await node.handle(
    REVOCATIONS_PROTOCOL,
    (stream, conn) =>
      void (async () => {
        try {
          // only a verified server hands out lists, and only CA-signed ones are taken
          if (isServer || membership.claim(conn.remotePeer)?.role !== "server") throw new Error("revocation lists come from servers");
          const list = await receiveRevocations(stream, identity.caPublicKey);
          if (adopt(list, `server ${membership.claim(conn.remotePeer)?.nodeName ?? conn.remotePeer.toString()}`) && o.revocationsCache) keep(o.revocationsCache, list, log);
          await stream.close().catch(() => {});
        } catch (e) {
          log.debug("revocation list not taken", { peer: conn.remotePeer.toString(), error: e });
          stream.abort(e instanceof Error ? e : new Error(String(e)));
        }
      })(),
    { runOnLimitedConnection: true },
  );
  const present = (conn: Connection) => void presentCertificate(conn, book, events);
  node.addEventListener("connection:open", (e) => present(e.detail));
  // a running node hears of its certificate's end too: daily from 14 days before, then every hour once peers refuse it
  const own = identity.cert;
  let lastExpiryLog = 0;
  const checkExpiry = (): void => {
    const left = daysLeft(own.notAfter);
    const fix = `edgemesh cert issue --ca CA_DIR --node ${own.nodeName}${own.role === "agent" ? "" : ` --role ${own.role}`} --out DIR, then restart with the new files`;
    if (left <= 0 && Date.now() - lastExpiryLog > 3600_000) {
      lastExpiryLog = Date.now();
      log.error("this node's certificate has expired: peers refuse it", { expired: new Date(own.notAfter * 1000).toISOString(), fix });
    } else if (left > 0 && left <= EXPIRY_WARNING_DAYS && Date.now() - lastExpiryLog > DAY * 1000) {
      lastExpiryLog = Date.now();
      log.warn("this node's certificate expires soon", { daysLeft: left, expires: new Date(own.notAfter * 1000).toISOString(), fix });
    }
  };
  const expiryTimer = setInterval(checkExpiry, 600_000);
  expiryTimer.unref?.();
  return {
    book,
    status: () => ({
      version: 2,
      node: own.nodeName,
      role: own.role,
      serial: String(own.serial),
      notAfter: new Date(own.notAfter * 1000).toISOString(),
      daysLeft: daysLeft(own.notAfter),
      revocations: book.revocations?.entries.length ?? 0,
    }),
    stop: () => {
      watcher?.close();
      clearInterval(poll);
      clearInterval(expiryTimer);
    },
  };
}

/** writes the list for the next start (atomically); a failure costs only that */
function keep(path: string, list: RevocationList, log: Logger): void {
  try {
    mkdirSync(dirname(path), { recursive: true });
    const tmp = `${path}.tmp-${process.pid}`;
    writeFileSync(tmp, armor("EDGEMESH REVOCATION LIST", list.bytes), { mode: 0o644 });
    renameSync(tmp, path);
  } catch (e) {
    log.warn("cannot keep the revocation list for the next start", { file: path, error: e });
  }
}
