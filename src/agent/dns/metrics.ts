// The DNS module's Prometheus metrics: queries by type and rcode, cache
// hits, upstream attempts and their latency, rejected packets.
import type { Metrics } from "../../admin/metrics.ts";
import type { AnswerCache } from "./cache.ts";
import type { Zone } from "./zone.ts";

const RCODE_NAMES = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"];
// Types we label by name; anything else is "other", so a client cannot grow
// the metric without bound by asking odd types.
const TYPES = new Set(["A", "AAAA", "SRV", "PTR", "CNAME", "TXT", "SOA", "NS", "MX", "ANY", "HTTPS", "SVCB", "CAA"]);

export function rcodeName(rcode: number): string {
  return RCODE_NAMES[rcode] ?? (rcode === 16 ? "BADVERS" : String(rcode));
}

export function dnsMetrics(metrics: Metrics, cache: AnswerCache, zone: () => Zone) {
  const queries = metrics.counter("dns_queries_total", "DNS queries answered, by question type, rcode and source (zone, cache, upstream, error).");
  const rejected = metrics.counter("dns_rejected_total", "Packets that were not a well-formed query, by reason.");
  const attempts = metrics.counter("dns_upstream_requests_total", "Queries sent to upstream resolvers, by upstream and result.");
  const seconds = metrics.counter("dns_upstream_seconds_total", "Time spent waiting for upstream resolvers, by upstream (divide by requests for the mean latency).");
  const last = metrics.gauge("dns_upstream_last_seconds", "Latency of the last upstream request, by upstream.");
  const tcpRefused = metrics.counter("dns_tcp_refused_total", "TCP clients closed at accept because agent.dns.tcpMaxConnections were open.");
  const limited = metrics.counter("dns_rate_limited_total", "Forwarded lookups answered REFUSED because their client was past agent.dns.forwardRatePerSource.");
  metrics.collect("dns_cache_hits_total", "Queries answered from the cache.", "counter", () => [{ value: cache.hits }]);
  metrics.collect("dns_cache_misses_total", "Forwarded queries not found in the cache.", "counter", () => [{ value: cache.misses }]);
  metrics.collect("dns_cache_entries", "Answers held in the cache.", "gauge", () => [{ value: cache.size }]);
  metrics.collect("dns_zone_records", "Records in the cluster zone.", "gauge", () => [{ value: zone().size }]);
  return {
    query(type: string, rcode: number, source: string) {
      queries.inc({ type: TYPES.has(type) ? type : "other", rcode: rcodeName(rcode), source });
    },
    rejected(reason: string) {
      rejected.inc({ reason });
    },
    rateLimited() {
      limited.inc();
    },
    tcpRefused() {
      tcpRefused.inc();
    },
    upstream(upstream: string, result: string, s: number) {
      attempts.inc({ upstream, result });
      seconds.inc({ upstream }, s);
      last.set({ upstream }, s);
    },
  };
}
