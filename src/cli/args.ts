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
  "ca init": { values: ["--dir"], switches: [] },
  "ca revoke": { values: ["--ca", "--node", "--serial", "--out"], switches: [] },
  "cert issue": { values: ["--ca", "--node", "--role", "--days", "--out", "--pubkey"], switches: [] },
  "cert keygen": { values: ["--out"], switches: [] },
  help: { values: [], switches: [] },
};

/** commands of two words: `edgemesh ca init`, `edgemesh cert issue` */
const GROUPS = new Set(["ca", "cert"]);

export function parseArgs(argv: string[]): Parsed {
  const [first, ...rest] = argv;
  if (first === undefined) throw new UsageError("missing command");
  if (first === "--help" || first === "-h" || first === "help") {
    const asked = rest[0] && GROUPS.has(rest[0]) && rest[1] ? `${rest[0]} ${rest[1]}` : rest[0];
    if (asked && COMMANDS[asked]) return { command: asked, flags: {}, help: true };
    return { command: "help", flags: {}, help: true };
  }
  if (GROUPS.has(first)) {
    const sub = rest[0];
    if (sub === undefined || sub.startsWith("-")) throw new UsageError(`"${first}" needs a subcommand (${Object.keys(COMMANDS).filter((c) => c.startsWith(`${first} `)).map((c) => c.split(" ")[1]).join(", ")})`);
    const command = `${first} ${sub}`;
    if (!COMMANDS[command]) throw new UsageError(`unknown command "${command}"`);
    return parseFlags(command, rest.slice(1));
  }
  if (first === "--version" || first === "-v") return { command: "version", flags: {}, help: false };
  if (first.startsWith("-")) throw new UsageError(`unknown flag ${first}`);
  if (!COMMANDS[first]) throw new UsageError(`unknown command "${first}"`);
  return parseFlags(first, rest);
}

function parseFlags(first: string, rest: string[]): Parsed {
  const spec = COMMANDS[first]!;
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
