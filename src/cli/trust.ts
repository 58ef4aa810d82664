// The CA and certificate commands (identity v2): thin wrappers over
// src/trust/ca.ts that validate their flags and say what they wrote.
import { isDnsSubdomain } from "../model/grammar.ts";
import { initCa, issue, keygen, revoke, TrustFileError } from "../trust/ca.ts";
import { certPeerId, CertError, type Role } from "../trust/cert.ts";
import { RevocationError } from "../trust/revocation.ts";
import { ArmorError } from "../trust/armor.ts";
import { UsageError } from "./args.ts";

type Flags = Record<string, string | true>;

function need(flags: Flags, name: string, command: string): string {
  const v = flags[name];
  if (typeof v !== "string") throw new UsageError(`--${name} is required`, command);
  return v;
}

function nodeName(flags: Flags, command: string): string {
  const n = need(flags, "node", command);
  if (!isDnsSubdomain(n)) throw new UsageError(`--node: "${n}" is not a node name (lowercase DNS name: a-z, 0-9, '-', '.')`, command);
  return n;
}

/** runs one trust command; returns the exit code. Usage errors are thrown for main to print. */
export async function runTrustCommand(command: string, flags: Flags, out: (line: string) => void): Promise<number> {
  try {
    switch (command) {
      case "ca init": {
        const r = await initCa(need(flags, "dir", command));
        out(`wrote ${r.key} (mode 600: keep it here, never on an edge node) and ${r.pub} (trust.ca on every node)`);
        return 0;
      }
      case "cert keygen": {
        const r = await keygen(need(flags, "out", command));
        out(`wrote ${r.key} (mode 600, stays on this node) and ${r.pub} (for: edgemesh cert issue --pubkey ${r.pub})`);
        return 0;
      }
      case "cert issue": {
        const role = (flags.role ?? "agent") as string;
        if (!["agent", "server", "relay"].includes(role)) throw new UsageError(`--role: "${role}" is not agent, server or relay`, command);
        const days = flags.days === undefined ? 365 : Number(flags.days);
        if (!Number.isInteger(days) || days < 1 || days > 36500) throw new UsageError(`--days: expected whole days from 1 to 36500, got "${String(flags.days)}"`, command);
        const r = await issue({
          caDir: need(flags, "ca", command),
          nodeName: nodeName(flags, command),
          role: role as Role,
          days,
          outDir: need(flags, "out", command),
          ...(typeof flags.pubkey === "string" ? { publicKeyFile: flags.pubkey } : {}),
        });
        out(
          `wrote ${r.certPath}${r.keyPath ? ` and ${r.keyPath} (mode 600)` : ""}: node ${r.cert.nodeName}, role ${r.cert.role}, serial ${r.cert.serial}, peer ID ${certPeerId(r.cert)}, valid until ${new Date(r.cert.notAfter * 1000).toISOString()}`,
        );
        return 0;
      }
      case "ca revoke": {
        const ca = need(flags, "ca", command);
        const file = need(flags, "out", command);
        const hasNode = typeof flags.node === "string";
        const hasSerial = typeof flags.serial === "string";
        if (hasNode === hasSerial) throw new UsageError("give exactly one of --node NAME or --serial N", command);
        let entry: { nodeName: string } | { serial: bigint };
        if (hasNode) entry = { nodeName: nodeName(flags, command) };
        else {
          const s = flags.serial as string;
          if (!/^\d{1,20}$/.test(s) || BigInt(s) >= 2n ** 64n) throw new UsageError(`--serial: "${s}" is not a certificate serial (a decimal number)`, command);
          entry = { serial: BigInt(s) };
        }
        const list = await revoke(ca, entry, file);
        out(`wrote ${file}: ${list.entries.length} revocation${list.entries.length === 1 ? "" : "s"}, issued ${new Date(list.issuedAt * 1000).toISOString()}; servers reading it (server.revocations) pass it on to every agent`);
        return 0;
      }
    }
  } catch (e) {
    if (e instanceof TrustFileError || e instanceof CertError || e instanceof RevocationError || e instanceof ArmorError) {
      process.stderr.write(`edgemesh ${command}: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
  throw new UsageError(`unknown command "${command}"`);
}
