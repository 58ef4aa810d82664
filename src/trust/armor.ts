// The text form of our keys, certificates and revocation lists: one block of
// base64 between BEGIN/END lines naming what it holds, as PEM does, so a file
// says what it is and survives copy and paste. The bytes inside are ours
// (cert.ts, revocation.ts), not DER.
export type ArmorLabel = "EDGEMESH CA PRIVATE KEY" | "EDGEMESH CA PUBLIC KEY" | "EDGEMESH PRIVATE KEY" | "EDGEMESH PUBLIC KEY" | "EDGEMESH CERTIFICATE" | "EDGEMESH REVOCATION LIST";

/** largest block we decode (a revocation list of many thousand entries fits) */
const MAX_ARMOR_CHARS = 4 * 1024 * 1024;

export function armor(label: ArmorLabel, bytes: Uint8Array): string {
  const b64 = Buffer.from(bytes).toString("base64");
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

export class ArmorError extends Error {}

/** the bytes of the first block with this label; an error saying what the text holds instead */
export function dearmor(label: ArmorLabel, text: string): Uint8Array {
  if (text.length > MAX_ARMOR_CHARS) throw new ArmorError(`larger than ${MAX_ARMOR_CHARS} characters`);
  const begin = `-----BEGIN ${label}-----`;
  const end = `-----END ${label}-----`;
  const i = text.indexOf(begin);
  if (i < 0) {
    const other = /-----BEGIN ([A-Z ]+)-----/.exec(text)?.[1];
    throw new ArmorError(other ? `holds a ${other.toLowerCase()}, not a ${label.toLowerCase()}` : `not a ${label.toLowerCase()} (no "${begin}" line)`);
  }
  const j = text.indexOf(end, i + begin.length);
  if (j < 0) throw new ArmorError(`no "${end}" line`);
  const body = text.slice(i + begin.length, j).replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body)) throw new ArmorError("not base64 between the BEGIN and END lines");
  return new Uint8Array(Buffer.from(body, "base64"));
}
