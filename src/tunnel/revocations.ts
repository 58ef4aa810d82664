// Revocation lists on the wire (`/edgemesh/revocations/1.0.0`): a server
// hands its list to every agent whose certificate it has verified, and again
// to all of them whenever the list changes. A list is [u32 length][bytes],
// checked against the CA; an agent takes it only from a verified server and
// only when it is newer (by issue time) than the one it has. Whoever holds a
// newer list cuts off the peers it revokes.
import type { Connection, Stream } from "@libp2p/interface";
import { ProxyHeaderError, type Decoded } from "./proxy/header.ts";
import { readHeader } from "./proxy/read-header.ts";
import { openRevocationList, type RevocationList } from "../trust/revocation.ts";

export const REVOCATIONS_PROTOCOL = "/edgemesh/revocations/1.0.0";
/** the largest list we read (100,000 entries of the longest names fit) */
export const MAX_LIST_BYTES = 32 * 1024 * 1024;
const TIMEOUT_MS = 10_000;

/** [u32 length][bytes], bounded */
class ListDecoder {
  private parts: Uint8Array[] = [];
  private have = 0;
  private want = -1;

  push(chunk: Uint8Array): Decoded<Uint8Array> | undefined {
    this.parts.push(chunk.slice());
    this.have += chunk.length;
    const all = this.parts.length === 1 ? this.parts[0]! : new Uint8Array(Buffer.concat(this.parts));
    this.parts = [all];
    if (this.want < 0 && all.length >= 4) {
      this.want = new DataView(all.buffer, all.byteOffset, 4).getUint32(0);
      if (this.want > MAX_LIST_BYTES) throw new ProxyHeaderError(`revocation list of ${this.want} bytes, limit ${MAX_LIST_BYTES}`);
    }
    if (this.want < 0 || this.have < 4 + this.want) return undefined;
    return { value: all.slice(4, 4 + this.want), rest: all.subarray(4 + this.want) };
  }
}

export function encodeList(list: RevocationList): Uint8Array {
  const out = new Uint8Array(4 + list.bytes.length);
  new DataView(out.buffer).setUint32(0, list.bytes.length);
  out.set(list.bytes, 4);
  return out;
}

/** sends a list on a connection (a server to an agent) */
export async function sendRevocations(conn: Connection, list: RevocationList): Promise<void> {
  const stream = await conn.newStream(REVOCATIONS_PROTOCOL, { runOnLimitedConnection: true, signal: AbortSignal.timeout(TIMEOUT_MS) });
  try {
    stream.send(encodeList(list));
    await stream.close();
  } catch (e) {
    stream.abort(e instanceof Error ? e : new Error(String(e)));
    throw e;
  }
}

/** reads one list from a stream and checks it against the CA */
export async function receiveRevocations(stream: Stream, caPublicKey: Uint8Array): Promise<RevocationList> {
  const { value } = await readHeader(stream, new ListDecoder(), TIMEOUT_MS, "revocation list");
  return openRevocationList(value, caPublicKey);
}
