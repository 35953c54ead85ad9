// A closed-loop load generator: `concurrency` workers each run `op` back to back for `durationMs`.
// Records every latency (exact percentiles) and CPU time: this (client) process's, and whatever the
// probes count (the router's, Postgres'), per successful op. With `windowMs` it also reports each
// window of the run on its own (throughput over the life of a pool), without pausing the load.
import { machineBusyUs } from "./process-cpu.js";

/** Cumulative CPU time of something, µs (e.g. () => processCpuUs(routerPid)). */
export type CpuProbe = () => number;

export interface LoadStats {
  ops: number;
  errors: number;
  seconds: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU per successful op, µs: `client` (this process) and one entry per probe. */
  cpuUsPerOp: Record<string, number>;
  /** Busy CPU of the whole machine in this time, in cores (2 = both cores busy). */
  machineBusyCores?: number;
  firstError?: string;
}

export interface LoadResult extends LoadStats {
  /** Consecutive windows of `windowMs` (the last one may be shorter); one window without windowMs. */
  windows: LoadStats[];
}

export interface LoadOptions {
  windowMs?: number;
  probes?: Record<string, CpuProbe>;
}

const clientCpu: CpuProbe = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

interface Mark { t: number; machine: number; cpu: Record<string, number> }

export async function closedLoop(
  concurrency: number, durationMs: number, op: (worker: number) => Promise<unknown>, opts: LoadOptions = {},
): Promise<LoadResult> {
  const probes: Record<string, CpuProbe> = { client: clientCpu, ...opts.probes };
  const mark = (): Mark => ({ t: performance.now(), machine: machineBusyUs(), cpu: Object.fromEntries(Object.entries(probes).map(([k, p]) => [k, p()])) });
  const marks: Mark[] = [mark()];
  // Samples of the window in progress: latencies[i] and errors[i] belong to the window after marks[i].
  const latencies: number[][] = [[]];
  const errors: number[] = [0];
  const firstErrors: (string | undefined)[] = [undefined];
  let w = 0;
  const end = marks[0].t + durationMs;
  const timer = opts.windowMs
    ? setInterval(() => {
      marks.push(mark());
      latencies.push([]);
      errors.push(0);
      firstErrors.push(undefined);
      w++;
    }, opts.windowMs)
    : undefined;
  await Promise.all(Array.from({ length: concurrency }, async (_, worker) => {
    while (performance.now() < end) {
      const s = performance.now();
      try {
        await op(worker);
        latencies[w].push(performance.now() - s);
      } catch (err) {
        errors[w]++;
        firstErrors[w] ??= (err as Error).message;
      }
    }
  }));
  clearInterval(timer);
  marks.push(mark());

  const stats = (from: number, to: number): LoadStats => {
    const lat = latencies.slice(from, to).flat().sort((a, b) => a - b);
    const at = (q: number) => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))] ?? NaN;
    const seconds = (marks[to].t - marks[from].t) / 1000;
    const cpuUsPerOp = Object.fromEntries(Object.keys(probes).map((k) => [k, (marks[to].cpu[k] - marks[from].cpu[k]) / Math.max(1, lat.length)]));
    return {
      ops: lat.length, errors: errors.slice(from, to).reduce((a, b) => a + b, 0), seconds, opsPerSec: lat.length / seconds,
      p50Ms: at(0.5), p99Ms: at(0.99), cpuUsPerOp, machineBusyCores: (marks[to].machine - marks[from].machine) / 1e6 / seconds, firstError: firstErrors.slice(from, to).find((e) => e !== undefined),
    };
  };
  const count = latencies.length;
  // A last window much shorter than the others (the timer fired just before the end) says little.
  const last = opts.windowMs && count > 1 && marks[count].t - marks[count - 1].t < opts.windowMs / 2 ? count - 1 : count;
  const windows = Array.from({ length: last }, (_, i) => stats(i, i + 1));
  return { ...stats(0, count), windows };
}
