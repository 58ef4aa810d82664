// Splits a streamed watch body into JSON events. Lines may be split across
// chunks, several may share a chunk, and one object may be many MiB; a line
// that does not parse is reported and skipped, never fatal.
export const MAX_LINE_BYTES = 64 * 1024 * 1024;

export type LineResult = { ok: true; value: unknown } | { ok: false; error: string; line: string; oversized?: boolean };

export class NdjsonSplitter {
  private parts: Uint8Array[] = [];
  private pending = 0;
  private readonly decoder = new TextDecoder();

  constructor(private readonly maxLineBytes = MAX_LINE_BYTES) {}

  /** feeds a chunk; returns the complete lines it finished, parsed */
  push(chunk: Uint8Array): LineResult[] {
    const out: LineResult[] = [];
    let start = 0;
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, start)) {
      this.take(chunk.subarray(start, i));
      out.push(...this.flushLine());
      start = i + 1;
    }
    if (start < chunk.length) this.take(chunk.subarray(start));
    if (this.pending > this.maxLineBytes) {
      const size = this.pending;
      this.parts = [];
      this.pending = 0;
      this.skipping = true;
      out.push({ ok: false, error: `line longer than ${this.maxLineBytes} bytes (${size}+), skipped`, line: "", oversized: true });
    }
    return out;
  }

  /** the stream ended: a final line without newline still counts */
  end(): LineResult[] {
    return this.flushLine();
  }

  private skipping = false;

  private take(part: Uint8Array): void {
    if (this.skipping || part.length === 0) return;
    // copy: the caller may reuse its chunk buffer
    this.parts.push(part.slice());
    this.pending += part.length;
  }

  private flushLine(): LineResult[] {
    if (this.skipping) {
      // the rest of an oversized line ends here
      this.skipping = false;
      this.parts = [];
      this.pending = 0;
      return [];
    }
    if (this.pending === 0) return [];
    if (this.pending > this.maxLineBytes) {
      // a whole line that came in one chunk: the same bound as one split over many
      const size = this.pending;
      this.parts = [];
      this.pending = 0;
      return [{ ok: false, error: `line longer than ${this.maxLineBytes} bytes (${size}), skipped`, line: "", oversized: true }];
    }
    const buf = this.parts.length === 1 ? this.parts[0]! : concat(this.parts, this.pending);
    this.parts = [];
    this.pending = 0;
    const text = this.decoder.decode(buf).trim();
    if (!text) return [];
    try {
      return [{ ok: true, value: JSON.parse(text) }];
    } catch (e) {
      return [{ ok: false, error: (e as Error).message, line: text.length > 200 ? `${text.slice(0, 200)}...` : text }];
    }
  }
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
