// Publishes snapshots: debounced (a burst of watch events becomes one
// snapshot within 50 ms), whole (never a partial table), and only when the
// table actually changed.
import type { Bus } from "../bus.ts";
import type { Node, Service } from "../../model/index.ts";

export const DEBOUNCE_MS = 50;

export class SnapshotPublisher {
  private timer?: ReturnType<typeof setTimeout>;
  private lastServices = "";
  private lastNodes = "";
  private gen = 0;
  private nodeGen = 0;
  published = 0;

  constructor(
    private readonly bus: Bus,
    private readonly build: () => { services: Service[]; nodes: Node[] } | undefined,
    private readonly debounceMs = DEBOUNCE_MS,
  ) {}

  /** something changed: publish within debounceMs */
  poke(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, this.debounceMs);
  }

  flush(): void {
    const st = this.build();
    if (!st) return; // not every source has synced yet: no partial tables
    const s = JSON.stringify(st.services);
    if (s !== this.lastServices) {
      this.lastServices = s;
      this.bus.publish("services", { services: st.services, generation: ++this.gen });
      this.published++;
    }
    const n = JSON.stringify(st.nodes);
    if (n !== this.lastNodes) {
      this.lastNodes = n;
      this.bus.publish("nodes", { nodes: st.nodes, generation: ++this.nodeGen });
    }
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}
