// The agent's in-process event bus: topics mapped to payload types, so a
// publisher and its subscribers cannot disagree on a payload's shape.
// Modules talk only through it and never import each other.
import type { Logger } from "../log.ts";
import type { NodeSnapshot, ServiceSnapshot } from "../model/index.ts";
import type { TunnelAccess } from "../model/tunnel.ts";
import type { ListenerTable } from "../model/listeners.ts";
import type { ServiceConnector } from "../model/connector.ts";

export interface Topics {
  /** the full service table after every change (controller → proxier, dns, traffic) */
  services: ServiceSnapshot;
  /** known nodes and their addresses (controller → tunnel, for direct-dial hints) */
  nodes: NodeSnapshot;
  /** published once by the tunnel module when it is up (tunnel → traffic, socks5) */
  tunnel: TunnelAccess;
  /** the traffic module's listener per service port (traffic → proxier) */
  listeners: ListenerTable;
  /** service lookup + backend connect (traffic → the SOCKS5 front door) */
  connector: ServiceConnector;
}

export type Handler<T> = (payload: T) => void | Promise<void>;

export interface SubscribeOptions {
  /** deliver the last payload published on the topic right away (snapshots) */
  replay?: boolean;
}

export class Bus<T extends object = Topics> {
  private readonly subs = new Map<keyof T, Array<{ fn: Handler<any>; name: string }>>();
  private readonly last = new Map<keyof T, unknown>();
  // Publications made while a delivery is running wait here, so every
  // subscriber sees events in publication order even when a handler publishes.
  private readonly queue: Array<() => void> = [];
  private delivering = false;

  constructor(private readonly log: Logger) {}

  subscribe<K extends keyof T>(topic: K, fn: Handler<T[K]>, name = "anonymous", opts: SubscribeOptions = {}): () => void {
    const list = this.subs.get(topic) ?? [];
    const entry = { fn, name };
    list.push(entry);
    this.subs.set(topic, list);
    if (opts.replay && this.last.has(topic)) {
      const payload = this.last.get(topic) as T[K];
      this.enqueue(() => this.call(topic, entry, payload));
    }
    return () => {
      const cur = this.subs.get(topic);
      if (cur) this.subs.set(topic, cur.filter((e) => e !== entry));
    };
  }

  publish<K extends keyof T>(topic: K, payload: T[K]): void {
    this.last.set(topic, payload);
    this.enqueue(() => {
      for (const entry of this.subs.get(topic) ?? []) this.call(topic, entry, payload);
    });
  }

  /** the last payload published on a topic, if any */
  latest<K extends keyof T>(topic: K): T[K] | undefined {
    return this.last.get(topic) as T[K] | undefined;
  }

  private enqueue(job: () => void): void {
    this.queue.push(job);
    if (this.delivering) return;
    this.delivering = true;
    try {
      while (this.queue.length) this.queue.shift()!();
    } finally {
      this.delivering = false;
    }
  }

  private call(topic: keyof T, entry: { fn: Handler<any>; name: string }, payload: unknown): void {
    // A failing subscriber is logged and skipped: one broken module must not
    // starve the others of updates.
    const fail = (e: unknown) =>
      this.log.error("subscriber failed", { topic: String(topic), subscriber: entry.name, error: e instanceof Error ? e.message : String(e) });
    try {
      const r = entry.fn(payload);
      if (r && typeof (r as Promise<void>).catch === "function") (r as Promise<void>).catch(fail);
    } catch (e) {
      fail(e);
    }
  }
}
