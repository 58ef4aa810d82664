// Messages between the server's lane relay (main thread) and its thread.
export type RelayWorkerMessage = { op: "start"; fd: number } | { op: "allow"; relayId: number; token: Uint8Array } | { op: "revoke"; relayId: number } | { op: "stop" };

export interface RelayStats {
  /** agents whose address is registered */
  registered: number;
  forwarded: number;
  registrations: number;
  drops: Record<string, number>;
}

export type RelayWorkerEvent = ({ ev: "stats" } & RelayStats) | { ev: "allowed"; relayId: number } | { ev: "stopped" };
