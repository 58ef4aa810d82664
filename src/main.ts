// The edgemesh command: one binary, two roles, and a few tools.
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { parseArgs, UsageError } from "./cli/args.ts";
import { MAIN_USAGE, COMMAND_USAGE } from "./cli/usage.ts";
import { fetchStatus, renderStatus, StatusFetchError } from "./cli/status.ts";
import { loadConfig, loadIdentityInto, ConfigError, type Role } from "./config/load.ts";
import { runDaemon } from "./daemon/run.ts";
import { agentModules } from "./agent/modules.ts";
import { serverModules } from "./server/modules.ts";
import { VERSION } from "./version.ts";
import { reexecWithAllocatorSettings } from "./daemon/allocator.ts";
import { runTrustCommand } from "./cli/trust.ts";

const DEFAULT_CONFIG = "/etc/edgemesh/edgemesh.yaml";

async function runRole(role: Role, configPath: string): Promise<number> {
  reexecWithAllocatorSettings((msg) => process.stderr.write(`edgemesh ${role}: ${msg}\n`));
  let config;
  try {
    config = await loadIdentityInto(loadConfig(configPath, { role }));
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`edgemesh ${role}: invalid config:\n${e.problems.map((p) => `  ${p}`).join("\n")}\n`);
      return 1;
    }
    throw e;
  }
  try {
    await runDaemon(config, role === "agent" ? agentModules : serverModules);
  } catch (e) {
    process.stderr.write(`edgemesh ${role}: ${(e as Error).message}\n`);
    return 1;
  }
  return -1; // keeps running until a signal
}

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      const usage = e.command ? COMMAND_USAGE[e.command] : MAIN_USAGE;
      process.stderr.write(`edgemesh: ${e.message}\n\n${usage}`);
      return 2;
    }
    throw e;
  }
  if (parsed.help) {
    process.stdout.write(parsed.command === "help" ? MAIN_USAGE : COMMAND_USAGE[parsed.command]!);
    return 0;
  }
  switch (parsed.command) {
    case "version":
      process.stdout.write(`edgemesh ${VERSION}\n`);
      return 0;
    case "psk": {
      const secret = randomBytes(32).toString("base64") + "\n";
      const out = parsed.flags.out as string | undefined;
      if (out === undefined) {
        process.stdout.write(secret);
        return 0;
      }
      try {
        // wx: a mesh secret in use is never overwritten; 0600 from the first byte on
        writeFileSync(out, secret, { mode: 0o600, flag: "wx" });
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        process.stderr.write(`edgemesh psk: cannot write ${out}: ${code === "EEXIST" ? "it exists (a secret in use is never replaced; remove it first to make a new one)" : code ?? (e as Error).message}\n`);
        return 1;
      }
      process.stderr.write(`edgemesh psk: wrote ${out} (mode 600)\n`);
      return 0;
    }
    case "status": {
      try {
        const doc = await fetchStatus(parsed.flags.admin as string | undefined);
        process.stdout.write(parsed.flags.json ? JSON.stringify(doc, null, 2) + "\n" : renderStatus(doc));
        return 0;
      } catch (e) {
        if (e instanceof StatusFetchError) {
          process.stderr.write(`edgemesh status: ${e.message}\n`);
          return 1;
        }
        throw e;
      }
    }
    case "ca init":
    case "ca revoke":
    case "cert issue":
    case "cert keygen":
      try {
        return await runTrustCommand(parsed.command, parsed.flags, (line) => process.stderr.write(`edgemesh ${parsed.command}: ${line}\n`));
      } catch (e) {
        if (e instanceof UsageError) {
          process.stderr.write(`edgemesh: ${e.message}\n\n${COMMAND_USAGE[parsed.command]}`);
          return 2;
        }
        throw e;
      }
    case "server":
      return runRole("server", (parsed.flags.config as string | undefined) ?? DEFAULT_CONFIG);
    case "agent": {
      const config = parsed.flags.config as string | undefined;
      if (!config) {
        process.stderr.write(`edgemesh: agent needs --config FILE\n\n${COMMAND_USAGE.agent}`);
        return 2;
      }
      return runRole("agent", config);
    }
    default:
      process.stderr.write(MAIN_USAGE);
      return 2;
  }
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  if (code >= 0) process.exit(code);
}
