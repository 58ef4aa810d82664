// Identity v2 on the wire. Right after noise, each side of every connection
// (relayed ones too) presents its certificate on `/edgemesh/cert/1.0.0`; the
// other verifies it (CA signature, the noise-authenticated peer ID, validity,
// the revocation list) before the peer gets anything. Agents find a node's
// peer ID by name from the certificates they have verified, and ask the
// servers for the others on `/edgemesh/lookup/1.0.0`.
// Frames are the proxy protocol's: [u16 length][JSON].
import type { Connection, PeerId, Stream } from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";
import type { Logger } from "../log.ts";
import { certPeerId, decodeCertificate, verifyCertificate, type Certificate } from "../trust/cert.ts";
import { revokedBy, type RevocationList } from "../trust/revocation.ts";
import { isDnsSubdomain } from "../model/grammar.ts";
import { encodeFrame } from "./proxy/frame.ts";
import { HeaderDecoder, ProxyHeaderError } from "./proxy/header.ts";
import { readHeader } from "./proxy/read-header.ts";

export const CERT_PROTOCOL = "/edgemesh/cert/1.0.0";
export const LOOKUP_PROTOCOL = "/edgemesh/lookup/1.0.0";
const MAX_FRAME = 2048;
const TIMEOUT_MS = 10_000;
/** certificates of other nodes kept by name (verified ones; the oldest go first) */
export const MAX_KNOWN_CERTS = 10_000;

export interface CertMessage {
  cert: string;
}

function certMessage(v: unknown): CertMessage {
  const m = v as { cert?: unknown };
  if (typeof m?.cert !== "string" || m.cert.length > 1024 || !/^[A-Za-z0-9+/]*={0,2}$/.test(m.cert)) throw new ProxyHeaderError("not a certificate message");
  return { cert: m.cert };
}

function lookupRequest(v: unknown): { name: string } {
  const m = v as { name?: unknown };
  if (typeof m?.name !== "string" || !isDnsSubdomain(m.name)) throw new ProxyHeaderError("not a lookup request");
  return { name: m.name };
}

function lookupReply(v: unknown): { cert?: string } {
  const m = v as { cert?: unknown };
  if (m?.cert === undefined) return {};
  return certMessage(m);
}

const frame = (o: unknown) => encodeFrame(new TextEncoder().encode(JSON.stringify(o)));
const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

export type CertVerdict = { ok: true; cert: Certificate } | { ok: false; reason: string };

/** what this node knows and trusts: the CA, its own certificate, the newest revocation list, and verified peers */
export class CertBook {
  private readonly byPeer = new Map<string, Certificate>();
  private readonly byName = new Map<string, Certificate>();
  revocations?: RevocationList;

  constructor(
    readonly caPublicKey: Uint8Array,
    readonly own: Certificate,
  ) {}

  /** checks a certificate a peer presented on a connection whose noise-authenticated peer is `peer` */
  async verify(bytes: Uint8Array, peer: string, now = Math.floor(Date.now() / 1000)): Promise<CertVerdict> {
    let cert: Certificate;
    try {
      cert = decodeCertificate(bytes);
    } catch (e) {
      return { ok: false, reason: `unreadable certificate: ${(e as Error).message}` };
    }
    const v = await verifyCertificate(cert, this.caPublicKey, now);
    if (!v.ok) return { ok: false, reason: `certificate of ${cert.nodeName}: ${v.reason}` };
    if (certPeerId(cert) !== peer) return { ok: false, reason: `certificate of ${cert.nodeName} is for another key than the peer's` };
    const revoked = revokedBy(this.revocations, cert);
    if (revoked) return { ok: false, reason: `certificate of ${cert.nodeName} (serial ${cert.serial}) is revoked` };
    return { ok: true, cert };
  }

  /** records a verified certificate */
  remember(peer: string, cert: Certificate): void {
    this.byPeer.set(peer, cert);
    if (this.byPeer.size > MAX_KNOWN_CERTS) this.byPeer.delete(this.byPeer.keys().next().value!);
    // the newest certificate of a name wins (a replaced device's new key)
    this.learn(cert);
  }

  /** a certificate learnt by lookup: it names a peer ID but proves nothing about a connection yet */
  learn(cert: Certificate): void {
    const known = this.byName.get(cert.nodeName);
    if (known && known.notBefore > cert.notBefore) return;
    this.byName.delete(cert.nodeName);
    this.byName.set(cert.nodeName, cert);
    if (this.byName.size > MAX_KNOWN_CERTS) this.byName.delete(this.byName.keys().next().value!);
  }

  ofPeer(peer: string): Certificate | undefined {
    return this.byPeer.get(peer);
  }

  ofName(name: string): Certificate | undefined {
    return this.byName.get(name);
  }

  forget(peer: string): void {
    this.byPeer.delete(peer);
  }

  /** peers whose certificate the current revocation list revokes */
  revokedPeers(): Array<{ peer: string; cert: Certificate }> {
    const out: Array<{ peer: string; cert: Certificate }> = [];
    for (const [peer, cert] of this.byPeer) if (revokedBy(this.revocations, cert)) out.push({ peer, cert });
    for (const [name, cert] of this.byName) if (revokedBy(this.revocations, cert)) this.byName.delete(name);
    return out;
  }
}

export interface ExchangeEvents {
  log: Logger;
  /** a peer's certificate verified on a connection */
  onVerified(conn: Connection, cert: Certificate): void;
  /** it did not: the connection is closed (`invalid`: a certificate was shown and failed, so the peer is no member at all) */
  onRefused(conn: Connection, reason: string, invalid: boolean): void;
}

type Handle = (protocol: string, handler: (stream: Stream, conn: Connection) => void, opts: { runOnLimitedConnection: boolean }) => Promise<void>;

/** answers certificate presentations and lookups on this node */
export async function serveCertProtocols(node: { handle: Handle }, book: CertBook, ev: ExchangeEvents): Promise<void> {
  await node.handle(
    CERT_PROTOCOL,
    (stream, conn) =>
      void (async () => {
        try {
          const { value } = await readHeader(stream, new HeaderDecoder("certificate", MAX_FRAME, certMessage), TIMEOUT_MS, "certificate");
          await checkPresented(conn, book, value.cert, ev);
          stream.send(frame({ cert: b64(book.own.bytes) }));
          await stream.close();
        } catch (e) {
          stream.abort(e instanceof Error ? e : new Error(String(e)));
        }
      })(),
    { runOnLimitedConnection: true },
  );
  await node.handle(
    LOOKUP_PROTOCOL,
    (stream, conn) =>
      void (async () => {
        try {
          // only verified members may look names up
          if (!book.ofPeer(conn.remotePeer.toString())) throw new Error("not a verified member");
          const { value } = await readHeader(stream, new HeaderDecoder("lookup", MAX_FRAME, lookupRequest), TIMEOUT_MS, "lookup");
          const cert = value.name === book.own.nodeName ? book.own : book.ofName(value.name);
          stream.send(frame(cert ? { cert: b64(cert.bytes) } : {}));
          await stream.close();
        } catch (e) {
          stream.abort(e instanceof Error ? e : new Error(String(e)));
        }
      })(),
    { runOnLimitedConnection: true },
  );
}

async function checkPresented(conn: Connection, book: CertBook, certB64: string, ev: ExchangeEvents): Promise<boolean> {
  const verdict = await book.verify(new Uint8Array(Buffer.from(certB64, "base64")), conn.remotePeer.toString());
  if (!verdict.ok) {
    ev.onRefused(conn, verdict.reason, true);
    return false;
  }
  book.remember(conn.remotePeer.toString(), verdict.cert);
  ev.onVerified(conn, verdict.cert);
  return true;
}

/** presents our certificate on a new connection and verifies the peer's answer */
export async function presentCertificate(conn: Connection, book: CertBook, ev: ExchangeEvents): Promise<void> {
  let stream: Stream | undefined;
  try {
    stream = await conn.newStream(CERT_PROTOCOL, { runOnLimitedConnection: true, signal: AbortSignal.timeout(TIMEOUT_MS) });
    stream.send(frame({ cert: b64(book.own.bytes) }));
    const { value } = await readHeader(stream, new HeaderDecoder("certificate", MAX_FRAME, certMessage), TIMEOUT_MS, "certificate");
    await checkPresented(conn, book, value.cert, ev);
    await stream.close().catch(() => {});
  } catch (e) {
    stream?.abort(e instanceof Error ? e : new Error(String(e)));
    if (conn.status !== "open") return;
    // a peer that cannot present a certificate (an identity v1 node, or none) is refused
    ev.onRefused(conn, `no certificate presented (${(e as Error).message}); is it a node of a release before certificates?`, false);
  }
}

/** asks a server for the certificate of a node name; verifies it before trusting it */
export async function lookupCertificate(conn: Connection, name: string, book: CertBook): Promise<Certificate | undefined> {
  const stream = await conn.newStream(LOOKUP_PROTOCOL, { runOnLimitedConnection: true, signal: AbortSignal.timeout(TIMEOUT_MS) });
  try {
    stream.send(frame({ name }));
    const { value } = await readHeader(stream, new HeaderDecoder("lookup reply", MAX_FRAME, lookupReply), TIMEOUT_MS, "lookup reply");
    await stream.close().catch(() => {});
    if (!value.cert) return undefined;
    const bytes = new Uint8Array(Buffer.from(value.cert, "base64"));
    let cert: Certificate;
    try {
      cert = decodeCertificate(bytes);
    } catch {
      return undefined;
    }
    // the answer must verify on its own: a server cannot make up a node
    const verdict = await book.verify(bytes, certPeerId(cert));
    if (!verdict.ok || verdict.cert.nodeName !== name) return undefined;
    return verdict.cert;
  } catch (e) {
    stream.abort(e instanceof Error ? e : new Error(String(e)));
    throw e;
  }
}

export function peerIdOfCert(cert: Certificate): PeerId {
  return peerIdFromString(certPeerId(cert));
}
