// Opening the system libcrypto through bun:ffi, shared by the noise AEAD and
// the privnet keystream: dlopen each candidate in turn and keep the first
// whose cipher binds and passes its self-test.
import { dlopen, FFIType, type FFIFunction } from "bun:ffi";

/** the EVP calls every cipher we bind needs; each user adds its own cipher getter */
export const EVP_COMMON = {
  OpenSSL_version: { args: [FFIType.i32], returns: FFIType.cstring },
  EVP_CIPHER_CTX_new: { args: [], returns: FFIType.ptr },
  EVP_CIPHER_CTX_free: { args: [FFIType.ptr], returns: FFIType.void },
  EVP_EncryptInit_ex: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  EVP_EncryptUpdate: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
} as const;

export type LoadResult<T> = { ok: true; value: T } | { ok: false; error: string };

export function firstLine(err: unknown): string {
  return String(err instanceof Error ? err.message : err).split("\n")[0] ?? "";
}

export function loadFirstUsable<S extends Record<string, FFIFunction>, T>(
  candidates: readonly string[],
  symbols: S,
  use: (lib: ReturnType<typeof dlopen<S>>["symbols"], path: string) => T,
): LoadResult<T> {
  if (typeof Bun === "undefined") return { ok: false, error: "bun:ffi requires the Bun runtime" };
  const reasons: string[] = [];
  for (const path of candidates) {
    let lib: ReturnType<typeof dlopen<S>>;
    try {
      lib = dlopen(path, symbols);
    } catch (err) {
      reasons.push(`${path}: ${firstLine(err)}`);
      continue;
    }
    try {
      return { ok: true, value: use(lib.symbols, path) };
    } catch (err) {
      // loaded but unusable (no ChaCha20, a FIPS-only build, an unexpected
      // counter behaviour): keep looking
      reasons.push(`${path}: ${firstLine(err)}`);
      lib.close();
    }
  }
  return { ok: false, error: `no usable libcrypto (${reasons.join("; ")})` };
}
