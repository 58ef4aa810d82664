// Messages between the pod network (main thread) and its reader thread
// (tun-worker.ts). Besides these, the reader posts slot numbers of the
// shared ring (a batch is ready) and -1 (stopped).
import type { Node } from "../../model/index.ts";

export interface WorkerStart {
  op: "start";
  fd: number;
  ring: SharedArrayBuffer;
  ctlBuf: SharedArrayBuffer;
  slots: number;
  slotBytes: number;
  /** the lane's UDP socket, -1 without lanes */
  udpFd: number;
  /** read end of the pipe the main thread writes a byte to after each message */
  wakeFd: number;
  /** this node's name (the route table's point of view) */
  self: string;
  mtu: number;
}

export interface LaneInstall {
  op: "lane";
  node: string;
  /** struct sockaddr_in of the peer's lane */
  addr: Uint8Array;
  txId: number;
  txKey: Uint8Array;
  rxId: number;
  rxKey: Uint8Array;
  /** through a server: `addr` is the server's, and datagrams go in an envelope to this relay id (the peer's there) */
  relayId?: number;
}

/** register our UDP address at a server's lane relay (sent every second) */
export interface RelayRegister {
  op: "register";
  /** "ip:port" of the server's lane relay (`addr` as text: its answers are told under this name) */
  server: string;
  addr: Uint8Array;
  relayId: number;
  token: Uint8Array;
}

export type WorkerMessage = WorkerStart | { op: "nodes"; nodes: Node[] } | LaneInstall | RelayRegister | { op: "unlane"; node: string };

export interface LaneStats {
  up: boolean;
  packetsOut: number;
  bytesOut: number;
  packetsIn: number;
  bytesIn: number;
}

export type WorkerEvent =
  | { ev: "lane"; node: string; up: boolean }
  /** a server ("ip:port" of its lane relay) saw our lane socket at `ip`:`port` (told when it changes, and every 10 s) */
  | { ev: "observed"; server: string; ip: string; port: number }
  /** a drop on the reader thread, for the log (a few per reason per minute; the counts come with stats) */
  | { ev: "drop"; reason: string; detail: string } | { ev: "stats"; lanes: Record<string, LaneStats>; drops: Record<string, number> };
