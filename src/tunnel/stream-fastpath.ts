// libp2p records the protocol of every stream it opens or accepts in the peer
// store (`peerStore.merge(peer, {protocols: [p]})`): a datastore read, a
// protobuf decode and encode, and an event, on both ends of every proxied
// connection: about 0.25 ms of a new connection's first byte, measured on
// loopback. After the first time for a peer and protocol the merge changes
// nothing, so we skip the repeats. Nothing of ours reads those protocol lists.
import type { TunnelNode } from "./node.ts";

const MAX_REMEMBERED = 10_000;

type Merge = (peer: { toString(): string }, data: Record<string, unknown>, options?: unknown) => Promise<unknown>;

export function skipRepeatedProtocolMerges(node: TunnelNode): boolean {
  const peerStore = (node as unknown as { components?: { peerStore?: { merge?: Merge } } }).components?.peerStore;
  if (!peerStore?.merge) return false; // internals changed: stay on the stock path
  const merge = peerStore.merge.bind(peerStore);
  const done = new Set<string>();
  peerStore.merge = async (peer, data, options) => {
    const keys = Object.keys(data);
    const protocols = data.protocols;
    if (keys.length !== 1 || !Array.isArray(protocols) || protocols.length !== 1) return merge(peer, data, options);
    const key = `${peer.toString()} ${String(protocols[0])}`;
    if (done.has(key)) return undefined;
    const result = await merge(peer, data, options);
    if (done.size >= MAX_REMEMBERED) done.clear();
    done.add(key);
    return result;
  };
  return true;
}
