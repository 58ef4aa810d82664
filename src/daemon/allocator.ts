// Bun's allocator (mimalloc) gives pages freed by the data path back to the
// kernel 10 ms after they are freed; a tunnel frees and allocates 64 KiB
// buffers all the time, so the same pages were handed back and faulted in
// again: 8-10% of an agent's CPU in page faults and madvise (perf, iperf3
// through the ClusterIP). With 1 s the pages are reused while traffic flows
// (the flow pacer's full collections free a second's worth at once) and still
// go back within a second of it stopping: both agents 4.1-4.4 -> 3.3-3.8
// CPU-s/GiB, 370 -> 420-490 MB/s; page faults per 4 s of transfer 73k (10 ms)
// -> 33-42k (250 ms) -> 14-16k (1 s). mimalloc reads
// the setting only from the environment at process start, so the daemon
// re-executes itself (same PID, same argv) once with it set; systemd's units
// set it themselves. An operator's own MIMALLOC_PURGE_DELAY is kept.
import { readFileSync } from "node:fs";
import { dlopen, FFIType, ptr } from "bun:ffi";

export const PURGE_DELAY_ENV = "MIMALLOC_PURGE_DELAY";
export const PURGE_DELAY_MS = "1000";

/** execve(2) of this same executable with MIMALLOC_PURGE_DELAY set; returns only when that is not needed or not possible */
export function reexecWithAllocatorSettings(log: (msg: string) => void = () => {}): void {
  if (process.env[PURGE_DELAY_ENV] !== undefined || process.platform !== "linux") return;
  try {
    const argv = readFileSync("/proc/self/cmdline").toString("latin1").split("\0");
    if (argv.at(-1) === "") argv.pop();
    // the environment byte for byte too, as the kernel gave it, plus ours
    const env = readFileSync("/proc/self/environ").toString("latin1").split("\0").filter((kv) => kv !== "");
    env.push(`${PURGE_DELAY_ENV}=${PURGE_DELAY_MS}`);
    const strings: Buffer[] = [];
    // read as latin1 and written back as latin1: every byte as it was
    const table = (xs: string[]): BigUint64Array => {
      const t = new BigUint64Array(xs.length + 1);
      xs.forEach((x, i) => {
        const b = Buffer.from(`${x}\0`, "latin1");
        strings.push(b); // kept alive until execve
        t[i] = BigInt(ptr(b));
      });
      return t;
    };
    const path = Buffer.from("/proc/self/exe\0");
    const argvT = table(argv);
    const envT = table(env);
    const libc = dlopen("libc.so.6", { execve: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 } });
    libc.symbols.execve(path, argvT, envT);
    libc.close();
    log(`allocator settings not applied: execve failed (${PURGE_DELAY_ENV}=${PURGE_DELAY_MS} can be set in the environment)`);
  } catch (e) {
    log(`allocator settings not applied: ${(e as Error).message}`);
  }
}
