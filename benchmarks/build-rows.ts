// What compiling the router bought (issue 14): the same router, config and cluster started from dist/
// (`node dist/server/main.js`, how it is deployed now) and from its sources through tsx (`node --import
// tsx server/main.ts`, how production ran before), side by side:
//   - start-up: spawn to "is serving on" (wall time), and the CPU spent until then by the process and
//     its children (tsx's esbuild, when it has to transform), tsx with its transform cache warm and off;
//   - resident memory (process and children) once serving, and after the load rows;
//   - router CPU per point select (SDK gRPC) under the same closed-loop load, in interleaved rounds so
//     load that comes and goes on a shared box hits both alike.
// Start-ups rotate which runtime goes first; the first round is a warm-up (disk cache, tsx's cache).
import { readFileSync } from "node:fs";
import { devConfig } from "../server/dev-cluster/dev-config.js";
import { pickFreePorts } from "../server/dev-cluster/ports.js";
import { type ShardRouterClient, createClient } from "../sdk/src/node.js";
import type { BenchCluster } from "./bench-cluster.js";
import type { CpuProbe } from "./closed-loop.js";
import { treeCpuUs, treeRss, waitedChildrenCpuUs } from "./process-cpu.js";
import { type ServerProcess, spawnRouter } from "./router-process.js";
import type { Row, Rows } from "./rows.js";

export const buildGroup = "build";
/** How a router is started here: tsx with its on-disk transform cache, tsx without it, compiled. */
type Start = "tsx" | "tsxNoCache" | "compiled";
const startNames: Record<Start, string> = {
  tsx: "tsx (transform cache warm)",
  tsxNoCache: "tsx, cache off (TSX_DISABLE_CACHE=1: a first start)",
  compiled: "compiled (dist/)",
};
export const buildRowNames = {
  tsx: "router through tsx (node --import tsx server/main.ts), SDK gRPC",
  compiled: "compiled router (node dist/server/main.js), SDK gRPC",
} as const;
const sql = "select id, balance from accounts where id = $1";
const mib = (bytes: number) => bytes / 2 ** 20;

export interface StartSample { readyMs: number; cpuMs: number; rssMiB: number }

export interface BuildComparison {
  starts: Record<Start, StartSample[]>;
  /** Medians of `starts` (the warm-up round left out). */
  startMedians: Record<Start, StartSample>;
  /** RSS of the two load routers (process and children) once serving and after every load round, MiB. */
  loadRouters: Record<"tsx" | "compiled", { rssAtStartMiB: number; rssAfterLoadMiB: number; peakRssMiB: number }>;
  inFlight: number;
  rounds: number;
  secondsPerRow: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function startRouter(env: BenchCluster, start: Start, log: (line: string) => void): Promise<ServerProcess> {
  const [port] = await pickFreePorts(1);
  const config = devConfig(env.cluster, { port, transactions: {} }) as { listen: { port: number } };
  return spawnRouter(config, { runtime: start === "compiled" ? "compiled" : "tsx", env: start === "tsxNoCache" ? { TSX_DISABLE_CACHE: "1" } : {}, log });
}

/** CPU the process and its children (waited for or alive) used so far, µs. */
function cpuSoFarUs(pid: number): number {
  return treeCpuUs([pid]) + waitedChildrenCpuUs(readFileSync(`/proc/${pid}/stat`, "utf8"));
}

function rssMiB(pid: number): { rss: number; peak: number } {
  const { rss, peak } = treeRss([pid]);
  return { rss: mib(rss), peak: mib(peak) };
}

export async function measureBuild(
  rows: Rows, env: BenchCluster, opts: { inFlight: number; seconds: number; starts: number; rounds: number; log: (line: string) => void },
): Promise<BuildComparison> {
  const { inFlight, seconds, rounds, log } = opts;
  const order: Start[] = ["tsx", "tsxNoCache", "compiled"];
  const starts: Record<Start, StartSample[]> = { tsx: [], tsxNoCache: [], compiled: [] };
  for (let round = 0; round <= opts.starts; round++) {
    for (let i = 0; i < order.length; i++) {
      const start = order[(round + i) % order.length];
      const router = await startRouter(env, start, log);
      try {
        const sample = { readyMs: router.readyMs, cpuMs: cpuSoFarUs(router.pid) / 1000, rssMiB: rssMiB(router.pid).rss };
        if (round > 0) starts[start].push(sample); // round 0 warms the disk cache and tsx's cache
        log(`${buildGroup} | start ${round === 0 ? "(warm-up) " : ""}${startNames[start]}: serving after ${sample.readyMs.toFixed(0)} ms, ` +
          `${sample.cpuMs.toFixed(0)} ms CPU, RSS ${sample.rssMiB.toFixed(1)} MiB`);
      } finally {
        await router.stop();
      }
    }
  }
  const startMedians = Object.fromEntries(order.map((s) => [s, {
    readyMs: median(starts[s].map((x) => x.readyMs)), cpuMs: median(starts[s].map((x) => x.cpuMs)), rssMiB: median(starts[s].map((x) => x.rssMiB)),
  }])) as Record<Start, StartSample>;

  // The load: one router of each kind, the same point selects, interleaved rounds.
  const routers = { tsx: await startRouter(env, "tsx", log), compiled: undefined as ServerProcess | undefined };
  const clients: ShardRouterClient[] = [];
  try {
    routers.compiled = await startRouter(env, "compiled", log);
    const load = {
      tsx: { router: routers.tsx, rssAtStart: rssMiB(routers.tsx.pid).rss },
      compiled: { router: routers.compiled, rssAtStart: rssMiB(routers.compiled.pid).rss },
    };
    let k = 0;
    const op = (client: ShardRouterClient) => () => {
      const id = env.homeKeys[k++ % env.homeKeys.length];
      return client.onShard(id).query(sql, [id]);
    };
    const tsxClient = createClient({ baseUrl: routers.tsx.url, protocol: "grpc" });
    const compiledClient = createClient({ baseUrl: routers.compiled.url, protocol: "grpc" });
    clients.push(tsxClient, compiledClient);
    const cpu = (pid: number): CpuProbe => () => treeCpuUs([pid]);
    for (let r = 1; r <= rounds; r++) {
      const name = (n: string) => `${n}, round ${r}`;
      await rows.measure(buildGroup, name(buildRowNames.tsx), inFlight, op(tsxClient), { proxy: cpu(routers.tsx.pid), seconds });
      await rows.measure(buildGroup, name(buildRowNames.compiled), inFlight, op(compiledClient), { vs: name(buildRowNames.tsx), proxy: cpu(routers.compiled.pid), seconds });
    }
    const after = (which: "tsx" | "compiled") => {
      const { rss, peak } = rssMiB(load[which].router.pid);
      return { rssAtStartMiB: load[which].rssAtStart, rssAfterLoadMiB: rss, peakRssMiB: peak };
    };
    return { starts, startMedians, loadRouters: { tsx: after("tsx"), compiled: after("compiled") }, inFlight, rounds, secondsPerRow: seconds };
  } finally {
    for (const c of clients) c.close();
    await routers.tsx.stop();
    await routers.compiled?.stop();
  }
}

/** The comparison as a markdown section: medians and ratios compiled ÷ tsx. */
export function buildLines(all: readonly Row[], c: BuildComparison | undefined): string[] {
  if (!c) return [];
  const f = (x: number | undefined, d = 0) => (x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(d));
  const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || !b ? "–" : `×${(a / b).toFixed(2)}`);
  const perRound = (runtime: "tsx" | "compiled", pick: (r: Row) => number | undefined) => median(
    Array.from({ length: c.rounds }, (_, i) => all.find((x) => x.group === buildGroup && x.name === `${buildRowNames[runtime]}, round ${i + 1}`))
      .map((r) => (r ? pick(r) : undefined)).filter((x): x is number => x !== undefined),
  );
  const cpu = { tsx: perRound("tsx", (r) => r.cpuUsPerOp?.proxy), compiled: perRound("compiled", (r) => r.cpuUsPerOp?.proxy) };
  const ops = { tsx: perRound("tsx", (r) => r.opsPerSec), compiled: perRound("compiled", (r) => r.opsPerSec) };
  const p50 = { tsx: perRound("tsx", (r) => r.p50Ms), compiled: perRound("compiled", (r) => r.p50Ms) };
  const m = c.startMedians;
  const n = c.starts.compiled.length;
  const line = (what: string, tsx: number, noCache: number | undefined, compiled: number, d = 0) =>
    `| ${what} | ${f(tsx, d)} | ${f(noCache, d)} | ${f(compiled, d)} | ${ratio(compiled, tsx)} | ${ratio(compiled, noCache)} |`;
  return [
    "## Production build: compiled router vs tsx", "",
    `The same router, config and cluster. Start-up: median of ${n} starts each after a warm-up round, runtimes in rotating order; ` +
      `CPU and RSS count the process and its children. Load: point selects through the SDK (gRPC), ${c.inFlight} in flight, ` +
      `${c.rounds} interleaved rounds of ${c.secondsPerRow} s (the "${buildGroup}" rows above), medians of the rounds.`, "",
    `| | ${startNames.tsx} | ${startNames.tsxNoCache} | ${startNames.compiled} | compiled ÷ tsx | compiled ÷ tsx, cache off |`,
    "|---|---:|---:|---:|---:|---:|",
    line("start-up to serving, ms", m.tsx.readyMs, m.tsxNoCache.readyMs, m.compiled.readyMs),
    line("start-up CPU, ms", m.tsx.cpuMs, m.tsxNoCache.cpuMs, m.compiled.cpuMs),
    line("RSS once serving, MiB", m.tsx.rssMiB, m.tsxNoCache.rssMiB, m.compiled.rssMiB, 1),
    line("RSS after the load rows, MiB", c.loadRouters.tsx.rssAfterLoadMiB, undefined, c.loadRouters.compiled.rssAfterLoadMiB, 1),
    line("peak RSS, MiB", c.loadRouters.tsx.peakRssMiB, undefined, c.loadRouters.compiled.peakRssMiB, 1),
    line("router CPU per point select, µs", cpu.tsx, undefined, cpu.compiled, 1),
    line("point selects per second", ops.tsx, undefined, ops.compiled),
    line("p50, ms", p50.tsx, undefined, p50.compiled, 2),
    "",
  ];
}
