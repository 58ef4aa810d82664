// `edgemesh status` rendering: the failures operators hit most stand out.
import { expect, test } from "bun:test";
import { renderStatus } from "../src/cli/status.ts";
import { emptyStatus, type StatusDoc } from "../src/admin/status.ts";

test("servers show their last error; services without endpoints and relay-only peers are flagged", () => {
  const doc: StatusDoc = {
    ...emptyStatus("agent", "edge1", "1.0.0"),
    ready: true,
    services: 2,
    servers: [
      { address: "203.0.113.10:20004", connected: false, reservation: false, error: "connect ECONNREFUSED 203.0.113.10:20004" },
      { address: "198.51.100.7:20006", kind: "relay", connected: true, reservation: true, rttMs: 12.34 },
    ],
    nat: { mapping: "endpoint-dependent", detail: "2 observers see 2 different addresses", observed: [{ observer: "server cloud", address: "192.0.2.11:41000" }, { observer: "relay gw", address: "192.0.2.11:52000" }] },
    peers: [
      { nodeName: "edge3", peerId: "12D3KooWA", path: "direct", rttMs: 0.4 },
      { nodeName: "edge2", peerId: "12D3KooWB", path: "relayed", rttMs: 3.2, relayedReason: "NAT randomises ports", certificate: { role: "agent", daysLeft: 9.5 } },
    ],
    identity: { version: 2, node: "edge1", role: "agent", serial: "42", notAfter: "2027-12-06T00:00:00.000Z", daysLeft: 365.2, revocations: 1 },
    listeners: [
      { service: "demo/web", protocol: "TCP", address: "10.96.0.10:80", endpointsByNode: { edge2: 2, edge3: 1 } },
      { service: "demo/empty", protocol: "TCP", address: "10.96.0.11:80", endpointsByNode: {} },
    ],
  };
  const text = renderStatus(doc);
  expect(text).toMatch(/203\.0\.113\.10:20004\s+-\s+no\s+no\s+-\s+connect ECONNREFUSED 203\.0\.113\.10:20004/);
  // a relay agent among the servers, with its RTT (the nearest is used first)
  expect(text).toMatch(/198\.51\.100\.7:20006\s+relay\s+yes\s+yes\s+12\.3ms/);
  expect(text).toMatch(/^nat mapping\s+endpoint-dependent: 2 observers see 2 different addresses \[192\.0\.2\.11:41000, 192\.0\.2\.11:52000\]$/m);
  expect(text).toMatch(/edge2\s+relayed\s+3\.2ms\s+agent, ! 9d\s+12D3KooWB\s+! relay only: NAT randomises ports/);
  expect(text).toMatch(/^identity\s+v2 certificate: agent edge1, serial 42, 365 days left; 1 revoked$/m);
  expect(text).toMatch(/edge3\s+direct\s+0\.4ms\s+-\s+12D3KooWA\n/);
  expect(text).toMatch(/demo\/web\s+TCP\s+10\.96\.0\.10:80\s+edge2:2 edge3:1/);
  expect(text).toMatch(/demo\/empty\s+TCP\s+10\.96\.0\.11:80\s+! none \(connections refused\)/);
  expect(text).toContain("1 service port(s) without ready endpoints");
  expect(text).toContain("1 peer(s) reachable only through a tunnel server's relay");
});

test("nothing to flag: no ATTENTION section", () => {
  const text = renderStatus({ ...emptyStatus("agent", "edge1", "1.0.0"), peers: [{ nodeName: "edge3", peerId: "x", path: "direct", rttMs: 1 }] });
  expect(text).not.toContain("ATTENTION");
});

test("pod network: each node's routed CIDRs, path and packet counts; drops and refused CIDRs stand out", () => {
  const doc: StatusDoc = {
    ...emptyStatus("agent", "edge1", "1.0.0"),
    podNetwork: {
      device: "edgemesh-tun",
      mtu: 1400,
      ownCIDRs: ["10.244.1.0/24"],
      routes: [
        { cidr: "10.244.2.0/24", node: "edge2" },
        { cidr: "10.244.3.0/24", node: "edge3" },
      ],
      refused: [{ node: "evil", cidr: "10.244.0.0/16", reason: "overlaps this node's pod CIDR" }],
      lane: { port: 20007 },
      peers: [
        { node: "edge2", path: "direct", packetsOut: 120, bytesOut: 9000, packetsIn: 98, bytesIn: 7000, lane: "up", lanePacketsOut: 40, lanePacketsIn: 38 },
        { node: "edge3", path: "direct", packetsOut: 5, bytesOut: 500, packetsIn: 0, bytesIn: 0, lane: "probing", lanePacketsOut: 0, lanePacketsIn: 0 },
      ],
      dropped: { source: 3, queue: 0 },
    },
  };
  const text = renderStatus(doc);
  expect(text).toMatch(/^POD NETWORK  device=edgemesh-tun mtu=1400 own=10\.244\.1\.0\/24 lane=udp\/20007 dropped: source=3$/m);
  expect(text).toMatch(/edge2\s+10\.244\.2\.0\/24\s+direct\s+up\s+120\s+98\s+40\s+38/);
  // a lane that never answered stands out (its packets take the stream)
  expect(text).toMatch(/edge3\s+10\.244\.3\.0\/24\s+direct\s+! probing \(no answer yet\)\s+5\s+0\s+0\s+0/);
  expect(renderStatus({ ...doc, podNetwork: { ...doc.podNetwork!, lane: null, peers: [] } })).toMatch(/lane=off/);
  expect(text).toContain("! evil 10.244.0.0/16 not routed: overlaps this node's pod CIDR");
  expect(renderStatus(emptyStatus("agent", "edge1", "1.0.0"))).not.toContain("POD NETWORK");
});
