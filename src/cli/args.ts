// Command-line parsing: a subcommand and its flags. Hand-written because the
// surface is small and every mistake must end in usage + exit 2.
export class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: string,
  ) {
    super(message);
    this.name = "UsageError";
  }
}

export interface FlagSpec {
  /** flags that take a value: --config F or --config=F */
  values: string[];
  /** flags that are on/off */
  switches: string[];
}

export interface Parsed {
  command: string;
  flags: Record<string, string | true>;
  help: boolean;
}

export const COMMANDS: Record<string, FlagSpec> = {
  server: { values: ["--config"], switches: [] },
  agent: { values: ["--config"], switches: [] },
  status: { values: ["--admin"], switches: ["--json"] },
  version: { values: [], switches: [] },
  psk: { values: ["--out"], switches: [] },
  help: { values: [], switches: [] },
};

export function parseArgs(argv: string[]): Parsed {
  const [first, ...rest] = argv;
  if (first === undefined) throw new UsageError("missing command");
  if (first === "--help" || first === "-h" || first === "help") {
    if (rest[0] && COMMANDS[rest[0]]) return { command: rest[0], flags: {}, help: true };
    return { command: "help", flags: {}, help: true };
  }
  if (first === "--version" || first === "-v") return { command: "version", flags: {}, help: false };
  if (first.startsWith("-")) throw new UsageError(`unknown flag ${first}`);
  const spec = COMMANDS[first];
  if (!spec) throw new UsageError(`unknown command "${first}"`);
  const flags: Record<string, string | true> = {};
  let help = false;
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    if (arg === "--help" || arg === "-h") {
      help = true;
      continue;
    }
    const eq = arg.indexOf("=");
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    if (spec.values.includes(name)) {
      const value = eq > 0 ? arg.slice(eq + 1) : rest[++i];
      if (value === undefined || value === "") throw new UsageError(`${name} needs a value`, first);
      flags[name.slice(2)] = value;
    } else if (spec.switches.includes(name) && eq < 0) {
      flags[name.slice(2)] = true;
    } else if (arg.startsWith("-")) {
      throw new UsageError(`unknown flag ${arg} for "${first}"`, first);
    } else {
      throw new UsageError(`unexpected argument "${arg}" for "${first}"`, first);
    }
  }
  return { command: first, flags, help };
}
