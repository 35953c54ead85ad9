// Rows of a benchmark run: each measured the same way (warm-up, then a closed loop with CPU probes
// for the router or proxy, Postgres and this client process), compared with the row named in `vs`,
// rendered as a markdown table and written with the run's metadata to benchmarks/results/.
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { type CpuProbe, type LoadResult, type LoadStats, closedLoop } from "./closed-loop.js";

export interface Row extends Partial<LoadStats> {
  group: string;
  name: string;
  inFlight?: number;
  /** The row (same group and in-flight count) this one is compared with. */
  vs?: string;
  /** ops/s ÷ the pair's ops/s, and p50 ÷ the pair's p50. */
  opsRatio?: number;
  p50Ratio?: number;
  /** Why the row was not measured (a tool is not installed). */
  skipped?: string;
  note?: string;
  windows?: LoadStats[];
  /** Busy CPU of processes not in this row (other work on the machine), in cores: the noise indicator. */
  othersBusyCores?: number;
}

export interface RowOptions {
  vs?: string;
  /** Whose CPU is in the proxy column: "router" or "pgbouncer"; undefined for direct rows. */
  proxy?: CpuProbe;
  windowMs?: number;
  seconds?: number;
  note?: string;
}

export interface RunSettings {
  seconds: number;
  warmupSeconds: number;
  /** CPU of every Postgres process of the cluster, µs. */
  postgresCpu: CpuProbe;
  log: (line: string) => void;
}

export class Rows {
  readonly rows: Row[] = [];

  constructor(readonly settings: RunSettings) {}

  /** Warms up, then runs `op` at `inFlight` for the row's duration, and records the row. */
  async measure(group: string, name: string, inFlight: number, op: (worker: number) => Promise<unknown>, opts: RowOptions = {}): Promise<Row> {
    const { seconds, warmupSeconds, postgresCpu } = this.settings;
    await closedLoop(inFlight, warmupSeconds * 1000, op); // connections, prepared statements, JIT
    const probes: Record<string, CpuProbe> = { postgres: postgresCpu, ...(opts.proxy ? { proxy: opts.proxy } : {}) };
    const result: LoadResult = await closedLoop(inFlight, (opts.seconds ?? seconds) * 1000, op, { probes, windowMs: opts.windowMs });
    const { windows, ...stats } = result;
    return this.add({ group, name, inFlight, ...stats, ...(opts.windowMs ? { windows } : {}), vs: opts.vs, note: opts.note });
  }

  /** Records a row measured elsewhere (h2load, a window of a run) or skipped; fills in its ratios. */
  add(row: Row): Row {
    const pair = row.vs === undefined ? undefined : this.find(row.group, row.vs, row.inFlight);
    if (pair?.opsPerSec && row.opsPerSec !== undefined) row.opsRatio = row.opsPerSec / pair.opsPerSec;
    if (pair?.p50Ms && row.p50Ms !== undefined) row.p50Ratio = row.p50Ms / pair.p50Ms;
    if (row.machineBusyCores !== undefined && row.cpuUsPerOp && row.ops && row.seconds) {
      const ours = Object.values(row.cpuUsPerOp).reduce((a, b) => a + b, 0) * row.ops / row.seconds / 1e6;
      row.othersBusyCores = Math.max(0, row.machineBusyCores - ours);
    }
    this.rows.push(row);
    this.settings.log(describe(row));
    return row;
  }

  find(group: string, name: string, inFlight?: number): Row | undefined {
    return this.rows.find((r) => r.group === group && r.name === name && (inFlight === undefined || r.inFlight === inFlight) && !r.skipped);
  }
}

const fixed = (x: number | undefined, digits: number) => (x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(digits));

function describe(r: Row): string {
  if (r.skipped) return `${r.group} | ${r.name}: skipped (${r.skipped})`;
  const cpu = r.cpuUsPerOp ?? {};
  return `${r.group} | ${r.name} @${r.inFlight}: ${fixed(r.opsPerSec, 0)} ops/s, p50 ${fixed(r.p50Ms, 2)} ms, p99 ${fixed(r.p99Ms, 2)} ms, ` +
    `CPU µs/op proxy ${fixed(cpu.proxy, 0)} client ${fixed(cpu.client, 0)} postgres ${fixed(cpu.postgres, 0)}, ` +
    `others ${fixed(r.othersBusyCores, 2)} cores${r.opsRatio !== undefined ? `, ×${fixed(r.opsRatio, 2)} ${r.vs}` : ""}` +
    `${r.errors ? `, ${r.errors} errors (${r.firstError})` : ""}`;
}

export function markdownTable(rows: readonly Row[]): string {
  const lines = [
    "| group | row | in flight | ops/s | p50 ms | p99 ms | router/proxy CPU µs/op | client CPU µs/op | Postgres CPU µs/op | other work (cores) | compared with | × ops/s | × p50 |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
  ];
  for (const r of rows) {
    if (r.skipped) {
      lines.push(`| ${r.group} | ${r.name} | ${r.inFlight ?? ""} | skipped: ${r.skipped} |  |  |  |  |  |  |  |  |  |`);
      continue;
    }
    const cpu = r.cpuUsPerOp ?? {};
    const errors = r.errors ? ` (${r.errors} errors)` : "";
    lines.push(`| ${r.group} | ${r.name}${errors} | ${r.inFlight} | ${fixed(r.opsPerSec, 0)} | ${fixed(r.p50Ms, 2)} | ${fixed(r.p99Ms, 2)} | ` +
      `${fixed(cpu.proxy, 0)} | ${fixed(cpu.client, 0)} | ${fixed(cpu.postgres, 0)} | ${fixed(r.othersBusyCores, 2)} | ${r.vs ?? ""} | ${fixed(r.opsRatio, 2)} | ${fixed(r.p50Ratio, 2)} |`);
  }
  return lines.join("\n");
}

export function runMetadata(extra: Record<string, unknown>): Record<string, unknown> {
  return { date: new Date().toISOString(), commit: commit(), node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model, loadavgAtEnd: loadavg(), ...extra };
}

/** The commit measured, "+changes" when server/ differs from it; null outside a git checkout. */
function commit(): string | null {
  const git = (...args: string[]) => spawnSync("git", ["-C", import.meta.dirname, ...args], { encoding: "utf8" });
  const head = git("rev-parse", "--short", "HEAD");
  if (head.status !== 0) return null;
  return head.stdout.trim() + (git("status", "--porcelain", "--", "../server").stdout.trim() ? "+changes" : "");
}

/** Writes `<name>-<UTC timestamp>.json` and `.md` into benchmarks/results/; returns their paths. */
export function writeResults(name: string, json: unknown, markdown: string): string[] {
  const stamp = new Date().toISOString().slice(0, 19).replace(/:/g, "-");
  const dir = join(import.meta.dirname, "results");
  mkdirSync(dir, { recursive: true });
  const base = join(dir, `${name}-${stamp}`);
  writeFileSync(`${base}.json`, JSON.stringify(json, null, 2) + "\n");
  writeFileSync(`${base}.md`, markdown);
  return [`${base}.json`, `${base}.md`];
}
