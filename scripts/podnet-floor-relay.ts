// The least a userspace pod network can do, for bench-podnet's floor row:
// our TUN device and reader (src/agent/podnet/tun.ts) and plain UDP to the
// peer node, one datagram per batch. No tunnel, no encryption, no checks,
// no flow control, and batches larger than a datagram are lost: for the
// bench's pings only. What the real pod network
// adds above this floor is the tunnel's cost; the floor itself is what Bun,
// a TUN and this machine cost.
// Usage (in a node's namespace, as root):
//   bun scripts/podnet-floor-relay.ts <device> <peer node IP> <peer pod CIDR>
import { TunDevice } from "../src/agent/podnet/tun.ts";
import { readLen, LEN_BYTES } from "../src/agent/podnet/unit-frames.ts";

const PORT = 41_000;
const [device, peerIp, peerCidr] = process.argv.slice(2);
if (!device || !peerIp || !peerCidr) throw new Error("usage: podnet-floor-relay.ts <device> <peer node IP> <peer pod CIDR>");
const tun = TunDevice.open(device);
for (const argv of [
  ["ip", "link", "set", device, "up", "mtu", "1400"],
  ["ip", "route", "replace", peerCidr, "dev", device],
  ["sysctl", "-qw", "net.ipv4.ip_forward=1"],
]) {
  const r = Bun.spawnSync(argv);
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString()}`);
}
const sock = await Bun.udpSocket({
  port: PORT,
  socket: {
    data(_s, buf) {
      const b = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
      for (let off = 0; off + LEN_BYTES <= b.byteLength; ) {
        const len = readLen(b, off);
        tun.write(b.subarray(off + LEN_BYTES, off + LEN_BYTES + len));
        off += LEN_BYTES + len;
      }
      // as the agent does: the host's answer, made during our write, goes out at once
      const now = tun.readNow();
      if (now.byteLength) sock.send(now, PORT, peerIp);
    },
  },
});
tun.startReading((batch) => void sock.send(batch, PORT, peerIp), { self: "floor", mtu: 1400 });
process.on("SIGTERM", () => void tun.close().then(() => process.exit(0)));
console.log("ready");
