// Runs `dig` (Debian dnsutils) and reads its output as a person would:
// status, header flags, and the records of each section.
export interface DigResult {
  status: string;
  flags: string[];
  answer: string[][];
  authority: string[][];
  additional: string[][];
  /** the EDNS buffer size the server advertised, when it sent OPT */
  ednsUdp?: number;
  text: string;
}

export function parseDig(text: string): DigResult {
  const status = /status: (\w+)/.exec(text)?.[1] ?? "NO-REPLY";
  const flags = (/;; flags: ([^;]*);/.exec(text)?.[1] ?? "").trim().split(/\s+/).filter(Boolean);
  const section = (title: string) => {
    const start = text.indexOf(`;; ${title} SECTION:\n`);
    if (start < 0) return [];
    const rest = text.slice(start).split("\n").slice(1);
    const end = rest.findIndex((l) => l.trim() === "");
    return rest.slice(0, end < 0 ? rest.length : end).map((l) => l.trim().split(/\s+/));
  };
  const udp = /; EDNS: version: \d+, flags:[^;]*; udp: (\d+)/.exec(text)?.[1];
  return { status, flags, answer: section("ANSWER"), authority: section("AUTHORITY"), additional: section("ADDITIONAL"), ...(udp ? { ednsUdp: Number(udp) } : {}), text };
}

/** `dig @server -p port ARGS`, one try, short timeout */
export async function dig(server: string, port: number, args: string[], opts: { ns?: string; timeoutS?: number } = {}): Promise<DigResult> {
  const argv = ["dig", `@${server}`, "-p", String(port), `+time=${opts.timeoutS ?? 2}`, "+tries=1", ...args];
  const cmd = opts.ns ? ["ip", "netns", "exec", opts.ns, ...argv] : argv;
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", timeout: 15_000 });
  const [text] = await Promise.all([new Response(p.stdout).text(), p.exited]);
  return parseDig(text);
}

/** the data fields (after name, TTL, class, type) of the answer records of one type, joined by spaces */
export function rdata(r: DigResult, type: string, section: "answer" | "authority" | "additional" = "answer"): string[] {
  return r[section].filter((f) => f[3] === type).map((f) => f.slice(4).join(" "));
}
