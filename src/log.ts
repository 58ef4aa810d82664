// One line per event: time, level, module, message, then key=value fields.
// journald adds its own timestamp, but the line must also read well in a file
// or a terminal, and greps by module (`[tunnel]`) and level.
export type Level = "debug" | "info" | "warn" | "error";

const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  child(module: string): Logger;
  enabled(level: Level): boolean;
}

export interface LogSink {
  write(line: string): void;
}

const stderrSink: LogSink = { write: (line) => process.stderr.write(line) };

const escapeControls = (json: string) => json.replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);

function formatValue(v: unknown): string {
  if (v instanceof Error) v = v.message;
  // values may come from the network: anything but plain printable ASCII is
  // quoted with every control and separator character escaped, one line always
  if (typeof v === "string") return /^[\x21\x23-\x3c\x3e-\x7e]+$/.test(v) ? v : escapeControls(JSON.stringify(v));
  if (typeof v === "number" || typeof v === "boolean" || v === null || v === undefined) return String(v);
  return escapeControls(JSON.stringify(v));
}

/** " k=v k2=v2", each value escaped as in a log line */
export function formatFields(fields: Fields): string {
  let out = "";
  for (const [k, v] of Object.entries(fields)) out += ` ${k}=${formatValue(v)}`;
  return out;
}

export function formatLine(time: Date, level: Level, module: string, msg: string, fields?: Fields): string {
  const line = `${time.toISOString()} ${level.toUpperCase().padEnd(5)} [${module}] ${msg.replace(/\n/g, "\\n")}`;
  return line + (fields ? formatFields(fields) : "") + "\n";
}

export class LevelHolder {
  constructor(public level: Level) {}
}

export function createLogger(module: string, level: Level | LevelHolder = "info", sink: LogSink = stderrSink): Logger {
  const holder = level instanceof LevelHolder ? level : new LevelHolder(level);
  const emit = (lv: Level, msg: string, fields?: Fields) => {
    if (RANK[lv] < RANK[holder.level]) return;
    sink.write(formatLine(new Date(), lv, module, msg, fields));
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (name) => createLogger(name, holder, sink),
    enabled: (lv) => RANK[lv] >= RANK[holder.level],
  };
}
