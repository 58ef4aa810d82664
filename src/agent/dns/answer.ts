// Which answer the cluster zone gives to one question: a pure function of
// (zone, name, type). `undefined` means the name is not ours and goes to the
// upstream resolvers.
import type { Answer } from "dns-packet";
import { normalizeName, type Zone } from "./zone.ts";

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export type Rcode = (typeof RCODE)[keyof typeof RCODE];

export interface Reply {
  rcode: number;
  /** authoritative: answers from the cluster zone */
  aa: boolean;
  answers: Answer[];
  authorities: Answer[];
  additionals: Answer[];
}

export interface ZoneReply extends Reply {
  /** a CNAME target outside the zone, for the resolver to look up and append */
  chase?: string;
}

// CNAME chains inside the zone are short (ExternalName → service), but a
// loop between two ExternalNames must end.
const MAX_CHAIN = 8;

export function inZone(name: string, domain: string): boolean {
  return name === domain || name.endsWith(`.${domain}`);
}

export function isReverse(name: string): boolean {
  return name.endsWith(".in-addr.arpa") || name.endsWith(".ip6.arpa");
}

export function answerFromZone(zone: Zone, qname: string, qtype: string): ZoneReply | undefined {
  const name = normalizeName(qname);
  if (isReverse(name)) {
    // We know only our own addresses; other reverse names are the upstream's.
    const rrs = zone.reverse.get(name);
    if (!rrs) return undefined;
    const answers = qtype === "PTR" || qtype === "ANY" ? rrs : [];
    return { rcode: RCODE.NOERROR, aa: true, answers, authorities: [], additionals: [] };
  }
  if (!inZone(name, zone.domain)) return undefined;
  // Before the first snapshot we cannot tell a missing service from one not
  // yet loaded; SERVFAIL makes clients retry instead of caching NXDOMAIN.
  if (zone.generation < 0) return { rcode: RCODE.SERVFAIL, aa: false, answers: [], authorities: [], additionals: [] };

  const answers: Answer[] = [];
  let owner = name;
  for (let hop = 0; hop < MAX_CHAIN; hop++) {
    const rrs = zone.records.get(owner);
    if (!rrs) {
      if (owner === zone.domain && (qtype === "SOA" || qtype === "ANY")) answers.push(zone.soa);
      if (hop === 0 && !zone.emptyNonTerminals.has(owner)) return negative(zone, RCODE.NXDOMAIN);
      break;
    }
    const matching = qtype === "ANY" ? rrs : rrs.filter((r) => r.type === qtype);
    if (matching.length) {
      answers.push(...matching);
      break;
    }
    const cname = rrs.find((r) => r.type === "CNAME");
    if (!cname) break;
    answers.push(cname);
    const target = normalizeName((cname as { data: string }).data);
    if (!inZone(target, zone.domain)) return { rcode: RCODE.NOERROR, aa: true, answers, authorities: [], additionals: [], chase: target };
    owner = target;
  }
  if (!answers.length) return negative(zone, RCODE.NOERROR);
  return { rcode: RCODE.NOERROR, aa: true, answers, authorities: [], additionals: additionalsFor(zone, answers) };
}

/** NXDOMAIN, or NODATA (NOERROR, no answer); both carry the SOA so resolvers can cache the negative answer */
function negative(zone: Zone, rcode: number): ZoneReply {
  return { rcode, aa: true, answers: [], authorities: [zone.soa], additionals: [] };
}

/** the addresses of SRV targets, so a client need not ask again */
function additionalsFor(zone: Zone, answers: Answer[]): Answer[] {
  const out: Answer[] = [];
  const seen = new Set<string>();
  for (const a of answers) {
    if (a.type !== "SRV") continue;
    const target = normalizeName(a.data.target);
    if (seen.has(target)) continue;
    seen.add(target);
    for (const r of zone.records.get(target) ?? []) if (r.type === "A" || r.type === "AAAA") out.push(r);
  }
  return out;
}
