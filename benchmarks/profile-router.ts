// Profiles the router's hot path alone: the router under `node --cpu-prof`, then a summary of the
// profile with the busy time divided by the requests served. Workloads: "point" (default), gRPC
// ExecuteOnShard point selects from h2load (no Node client in the way); "transfer-same" and
// "transfer-cross", Transfers from the SDK's gRPC client (each needs its own request id, which a
// prebuilt h2load body cannot give).
//   node --import tsx benchmarks/profile-router.ts [--workload point] [--seconds 10] [--streams 16] [--out DIR] [--top 30]
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { spawnSync } from "node:child_process";
import { startBenchCluster } from "./bench-cluster.js";
import { createClient } from "../sdk/src/node.ts";
import { closedLoop } from "./closed-loop.js";
import { executeOnShardBody, runH2load } from "./h2load.js";
import { processCpuUs } from "./process-cpu.js";
import { which } from "./which.js";

const { values: args } = parseArgs({ options: { workload: { type: "string" }, seconds: { type: "string" }, streams: { type: "string" }, out: { type: "string" }, top: { type: "string" } } });
const workload = args.workload ?? "point";
if (!["point", "transfer-same", "transfer-cross"].includes(workload)) throw new Error(`unknown --workload ${workload}: point, transfer-same or transfer-cross`);
const seconds = Number(args.seconds ?? 10);
const streams = Number(args.streams ?? 16);
const out = args.out ?? join(tmpdir(), `shardrouter-profile-${Date.now()}`);
mkdirSync(out, { recursive: true });
const h2load = which("h2load");
if (!h2load && workload === "point") throw new Error("h2load is not installed (Debian package nghttp2-client)");

const work = mkdtempSync(join(tmpdir(), "shardrouter-profile-work-"));
const env = await startBenchCluster({ profileDir: out, log: console.log });
let requests = 0;
let window = { from: 0n, to: 0n };
try {
  if (workload === "point") {
    const h2 = await executeOnShardBody(env.router.url, work, env.homeKeys[0], "select id, balance from accounts where id = $1");
    const run = (secs: number) => runH2load({
      h2load: h2load!, url: `${env.router.url}${h2.path}`, bodyFile: h2.bodyFile, streams, seconds: secs, responseBytes: h2.responseBytes,
      logFile: join(work, "h2load.log"), probes: { router: () => processCpuUs(env.router.pid) },
    });
    await run(1); // warm-up: JIT, connections, prepared statement
    const from = process.hrtime.bigint() / 1000n;
    const r = await run(seconds);
    window = { from, to: process.hrtime.bigint() / 1000n };
    requests = r.ops;
    console.log(`h2load, ${streams} streams, ${seconds} s: ${r.opsPerSec.toFixed(0)} req/s, p50 ${r.p50Ms.toFixed(2)} ms, ` +
      `router CPU ${r.cpuUsPerOp.router.toFixed(0)} µs/req (from /proc, without the profiler's own cost this would be a little less)`);
  } else {
    const client = createClient({ baseUrl: env.router.url, protocol: "grpc" });
    const to = workload === "transfer-same" ? env.homeKeys : env.otherKeys;
    let n = 0;
    const op = () => {
      const a = env.homeKeys[n++ % env.homeKeys.length];
      const b = to[(n * 7) % to.length];
      return a === b ? Promise.resolve() : client.transfer(a, b, 1n);
    };
    const run = (secs: number) => closedLoop(streams, secs * 1000, op, { probes: { router: () => processCpuUs(env.router.pid) } });
    await run(1);
    const from = process.hrtime.bigint() / 1000n;
    const r = await run(seconds);
    window = { from, to: process.hrtime.bigint() / 1000n };
    requests = r.ops;
    client.close();
    console.log(`${workload}, ${streams} in flight, ${seconds} s: ${r.opsPerSec.toFixed(0)} transfers/s, p50 ${r.p50Ms.toFixed(2)} ms, ` +
      `router CPU ${r.cpuUsPerOp.router.toFixed(0)} µs/transfer, errors ${r.errors}${r.firstError ? ` (${r.firstError})` : ""}`);
  }
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
