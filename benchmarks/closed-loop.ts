// A closed-loop load generator: `concurrency` workers each run `op` back to back for `durationMs`.
// Records every latency (exact percentiles; runs here are short) and this process's CPU time.
export interface LoadResult {
  ops: number;
  errors: number;
  seconds: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU of this (client) process per successful op, µs. */
  clientCpuUsPerOp: number;
  firstError?: string;
}

export async function closedLoop(concurrency: number, durationMs: number, op: (worker: number) => Promise<unknown>): Promise<LoadResult> {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + durationMs;
  await Promise.all(Array.from({ length: concurrency }, async (_, w) => {
    while (performance.now() < end) {
      const s = performance.now();
      try {
        await op(w);
        latencies.push(performance.now() - s);
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
      }
    }
  }));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return {
    ops: latencies.length, errors, seconds, opsPerSec: latencies.length / seconds,
    p50Ms: at(0.5), p99Ms: at(0.99), clientCpuUsPerOp: (cpu.user + cpu.system) / Math.max(1, latencies.length), firstError,
  };
}
