// The agent-wide (or server-wide) budget for bytes that peers may queue at
// us. A yamux stream starts with the protocol's fixed 256 KiB receive window
// and grows it (auto-tuning) while its reader keeps up; what a stream has been
// granted above that start is taken from this budget and given back when the
// stream ends. Past the budget a window stops growing: transfers carry on at
// the window they have, and memory stays bounded however many streams run.
import { pacerCounters } from "./gc-pacer.ts";

export interface FlowCounters {
  /** bytes granted above the streams' initial windows, now */
  grantedBytes: number;
  budgetBytes: number;
  /** window growths refused because the budget was spent */
  refusals: number;
  /** times a pipe paused its socket because the tunnel stream had not taken its bytes */
  socketPauses: number;
}

export class WindowBudget {
  private granted = 0;
  private refused = 0;
  socketPauses = 0;

  constructor(public limit: number) {}

  /** takes n bytes if they fit */
  take(n: number): boolean {
    if (this.granted + n > this.limit) {
      this.refused++;
      return false;
    }
    this.granted += n;
    return true;
  }

  give(n: number): void {
    this.granted = Math.max(0, this.granted - n);
  }

  counters(): FlowCounters {
    return { grantedBytes: this.granted, budgetBytes: this.limit, refusals: this.refused, socketPauses: this.socketPauses };
  }
}

/** one per process: every tunnel connection of an agent or server draws on it */
export const windowBudget = new WindowBudget(32 * 1024 * 1024);


type Collect = (name: string, help: string, type: "gauge" | "counter", read: () => Array<{ value: number }>) => void;

/** the flow-control figures in /metrics (both roles) */
export function collectFlowMetrics(collect: Collect): void {
  collect("tunnel_window_granted_bytes", "Receive window granted to peers above the streams' initial 256 KiB, now.", "gauge", () => [{ value: windowBudget.counters().grantedBytes }]);
  collect("tunnel_window_budget_bytes", "Limit on that (config flow.windowBudgetMiB).", "gauge", () => [{ value: windowBudget.limit }]);
  collect("tunnel_window_refusals_total", "Window growths refused because the budget was spent.", "counter", () => [{ value: windowBudget.counters().refusals }]);
  collect("tunnel_socket_pauses_total", "Times a socket was paused because its tunnel stream had not taken its bytes.", "counter", () => [{ value: windowBudget.socketPauses }]);
  collect("tunnel_paced_collections_total", "Young-generation garbage collections run in step with the bytes moved.", "counter", () => [{ value: pacerCounters().pacedCollections }]);
  collect("tunnel_paced_releases_total", "Full collections that gave free memory back to the kernel (RSS 32 MiB over its lowest).", "counter", () => [{ value: pacerCounters().pacedReleases }]);
}
