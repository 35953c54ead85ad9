// Profiles the router's hot path alone: the router under `node --cpu-prof`, driven only by h2load
// (gRPC ExecuteOnShard point selects, no Node client in the way), then a summary of the profile
// with the busy time divided by the requests served.
//   node --import tsx benchmarks/profile-router.ts [--seconds 10] [--streams 16] [--out DIR] [--top 30]
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { spawnSync } from "node:child_process";
import { startBenchCluster } from "./bench-cluster.js";
import { executeOnShardBody, runH2load } from "./h2load.js";
import { processCpuUs } from "./process-cpu.js";
import { which } from "./which.js";

const { values: args } = parseArgs({ options: { seconds: { type: "string" }, streams: { type: "string" }, out: { type: "string" }, top: { type: "string" } } });
const seconds = Number(args.seconds ?? 10);
const streams = Number(args.streams ?? 16);
const out = args.out ?? join(tmpdir(), `shardrouter-profile-${Date.now()}`);
mkdirSync(out, { recursive: true });
const h2load = which("h2load");
if (!h2load) throw new Error("h2load is not installed (Debian package nghttp2-client)");

const work = mkdtempSync(join(tmpdir(), "shardrouter-profile-work-"));
const env = await startBenchCluster({ profileDir: out, log: console.log });
let requests = 0;
let window = { from: 0n, to: 0n };
try {
  const h2 = await executeOnShardBody(env.router.url, work, env.homeKeys[0], "select id, balance from accounts where id = $1");
  const run = (secs: number) => runH2load({
    h2load, url: `${env.router.url}${h2.path}`, bodyFile: h2.bodyFile, streams, seconds: secs, responseBytes: h2.responseBytes,
    logFile: join(work, "h2load.log"), probes: { router: () => processCpuUs(env.router.pid) },
  });
  await run(1); // warm-up: JIT, connections, prepared statement
  const from = process.hrtime.bigint() / 1000n;
  const r = await run(seconds);
  window = { from, to: process.hrtime.bigint() / 1000n };
  requests = r.ops;
  console.log(`h2load, ${streams} streams, ${seconds} s: ${r.opsPerSec.toFixed(0)} req/s, p50 ${r.p50Ms.toFixed(2)} ms, ` +
    `router CPU ${r.cpuUsPerOp.router.toFixed(0)} µs/req (from /proc, without the profiler's own cost this would be a little less)`);
} finally {
  await env.stop();
  rmSync(work, { recursive: true, force: true });
}
// The main thread's profile is the largest file (tsx's loader thread writes one too).
const [profile] = readdirSync(out).filter((f) => f.endsWith(".cpuprofile")).map((f) => join(out, f)).sort((a, b) => statSync(b).size - statSync(a).size);
console.log(`profile: ${profile}; summary of the measured ${seconds} s only (${requests} requests)`);
spawnSync(process.execPath, [
  "--import", "tsx", join(import.meta.dirname, "profile-summary.ts"), profile,
  "--requests", String(requests), "--top", args.top ?? "30", "--from", String(window.from), "--to", String(window.to),
], { stdio: "inherit" });
