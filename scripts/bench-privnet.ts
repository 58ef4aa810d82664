// Connection-protector benchmark on loopback: one libp2p stream (tcp + noise
// + yamux) from this process to a receiver in a child process, with
//   none | pnet (@libp2p/pnet, 64 KiB messages as in test/privnet/libp2p-pnet.ts)
//   | openssl (privnet v1) | noble (privnet v1 fallback).
// Reports throughput and CPU seconds per GiB for each end.
// Usage: bun scripts/bench-privnet.ts [MiB per run, default 512] [runs, default 3] [modes, default none,pnet,openssl,noble,v2]
// (Internally the child runs: bun scripts/bench-privnet.ts --serve <mode>.)
import { createInterface } from 'node:readline';
import { makeNode, loopbackAddr, sendOverOneStream } from '../test/privnet/nodes.ts';
import type { Protection } from '../test/privnet/nodes.ts';
import { tryLoadOpenSslKeystream } from '../src/tunnel/privnet/openssl.ts';
import { multiaddr } from '@multiformats/multiaddr';

const SECRET = new TextEncoder().encode('bench-privnet secret');
const MODES: Protection[] = ['none', 'pnet', 'openssl', 'noble', 'v2'];
const say = (s: string): boolean => process.stderr.write(`bench-privnet: ${s}\n`);
const cpuNow = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

if (process.argv[2] === '--serve') {
  // Receiver: print the listen address, then answer "cpu" with CPU seconds used so far.
  const node = await makeNode({ protection: process.argv[3] as Protection, secret: SECRET });
  console.log(JSON.stringify({ addr: loopbackAddr(node).toString() }));
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'cpu') console.log(JSON.stringify({ cpu: cpuNow() }));
    if (line === 'quit') break;
  }
  await node.stop();
  process.exit(0);
}

const MIB = Number(process.argv[2] ?? 512);
const RUNS = Number(process.argv[3] ?? 3);
const modes = (process.argv[4]?.split(',') ?? MODES) as Protection[];
const BYTES = MIB * 1024 * 1024;
const GIB = BYTES / 2 ** 30;

interface Row {
  mode: Protection;
  mbps: number[];
  senderCpu: number[];
  receiverCpu: number[];
}

/** Returns a function yielding the child's next stdout line parsed as JSON (30 s limit). */
function lineReader(stdout: ReadableStream<Uint8Array>, mode: string): <T>() => Promise<T> {
  const reader = stdout.getReader();
  const dec = new TextDecoder();
  let buf = '';
  return async <T>(): Promise<T> => {
    const deadline = Bun.sleep(30_000).then(() => null);
    for (;;) {
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        return JSON.parse(line) as T;
      }
      const r = await Promise.race([reader.read(), deadline]);
      if (r === null || r.done) throw new Error(`${mode}: receiver did not answer`);
      buf += dec.decode(r.value, { stream: true });
    }
  };
}

async function benchMode(mode: Protection): Promise<Row> {
  const child = Bun.spawn([process.execPath, import.meta.path, '--serve', mode], { stdin: 'pipe', stdout: 'pipe', stderr: 'inherit' });
  const next = lineReader(child.stdout, mode);
  const ask = async (cmd: string): Promise<number> => {
    child.stdin.write(`${cmd}\n`);
    await child.stdin.flush();
    return (await next<{ cpu: number }>()).cpu;
  };
  const sender = await makeNode({ protection: mode, secret: SECRET });
  const row: Row = { mode, mbps: [], senderCpu: [], receiverCpu: [] };
  try {
    const addr = multiaddr((await next<{ addr: string }>()).addr);
    await sendOverOneStream(sender, addr, 32 * 1024 * 1024, 64 * 1024, false); // warm-up: connection, JIT
    for (let i = 0; i < RUNS; i++) {
      const s0 = cpuNow();
      const r0 = await ask('cpu');
      const r = await sendOverOneStream(sender, addr, BYTES, 64 * 1024, false);
      const s1 = cpuNow();
      const r1 = await ask('cpu');
      if (r.receivedBytes !== BYTES) throw new Error(`${mode}: receiver got ${r.receivedBytes} of ${BYTES} bytes`);
      row.mbps.push(r.mbPerSec);
      row.senderCpu.push((s1 - s0) / GIB);
      row.receiverCpu.push((r1 - r0) / GIB);
      say(`${mode} run ${i + 1}: ${r.mbPerSec.toFixed(0)} MB/s, CPU s/GiB sender ${((s1 - s0) / GIB).toFixed(2)} receiver ${((r1 - r0) / GIB).toFixed(2)}`);
    }
  } finally {
    await sender.stop();
    child.stdin.write('quit\n');
    await child.stdin.flush();
    await Promise.race([child.exited, Bun.sleep(5000).then(() => child.kill())]);
  }
  return row;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
};

const ossl = tryLoadOpenSslKeystream();
say(`privnet OpenSSL provider: ${ossl.ok ? ossl.factory.detail : `unavailable (${ossl.error})`}`);
const rows: Row[] = [];
for (const m of modes) {
  if (m === 'openssl' && !ossl.ok) continue;
  rows.push(await benchMode(m));
}

const base = rows.find((r) => r.mode === 'none');
const label: Record<Protection, string> = {
  none: 'no protector',
  pnet: '@libp2p/pnet (xsalsa20 wasm, 64 KiB msgs)',
  openssl: 'privnet v1, OpenSSL ChaCha20',
  noble: 'privnet v1, @noble/ciphers fallback',
  v2: 'privnet v2 (proof of the psk, then bytes as they are)',
};
const out = [
  `one stream, ${MIB} MiB per run, median of ${RUNS}; sender = this process, receiver = child process; loopback; ${navigator.hardwareConcurrency} CPUs`,
  '',
  '| protector | MB/s | vs none | CPU s/GiB sender | CPU s/GiB receiver | total |',
  '|---|---|---|---|---|---|',
  ...rows.map((r) => {
    const mb = median(r.mbps);
    const s = median(r.senderCpu);
    const rc = median(r.receiverCpu);
    return `| ${label[r.mode]} | ${mb.toFixed(0)} | ${base ? (mb / median(base.mbps)).toFixed(2) : 'n/a'} | ${s.toFixed(2)} | ${rc.toFixed(2)} | ${(s + rc).toFixed(2)} |`;
  }),
];
console.log(out.join('\n'));
