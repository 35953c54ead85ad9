// Cross-shard Transfer (two-phase commit) next to the same transfer as one local transaction, in one
// run on one cluster: how much does atomicity across shards cost?
//   npm run bench:transfer [-- --seconds 10 --concurrency 16]
// Rows: direct postgres.js local transaction (the floor: no router), Transfer on one shard through
// the router (local transaction), Transfer across shards through the router (2PC).
import { writeFileSync } from "node:fs";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { randomUUID } from "node:crypto";
import postgres from "postgres";
import { parseConfig } from "../server/config/config.js";
import { seedDemoAccounts } from "../server/dev-cluster/demo-accounts.js";
import { devConfig } from "../server/dev-cluster/dev-config.js";
import { startLocalCluster } from "../server/dev-cluster/local-cluster.js";
import { startRouter } from "../server/router.js";
import { startRouterProcess } from "../test/harness/router-process.js";
import { closedLoop, type LoadResult } from "./closed-loop.js";
import { processCpuUs } from "./process-cpu.js";

const { values: args } = parseArgs({ options: { seconds: { type: "string" }, concurrency: { type: "string" } } });
const seconds = Number(args.seconds ?? 10);
const concurrency = Number(args.concurrency ?? 16);

const dataDir = mkdtempSync(join(tmpdir(), "shardrouter-bench-"));
const cluster = await startLocalCluster({ dataDir, shards: 4, maxConnections: 200 });
try {
  // Seed through an in-process router (the router's own placement), then serve from a separate process.
  const seeder = await startRouter(parseConfig(devConfig(cluster, { port: 0 })), { log: () => {} });
  await seedDemoAccounts(seeder.planner);
  const shardOf = new Map<string, string>();
  for (let i = 0; i < 1000; i++) shardOf.set(`acct-${i}`, (await seeder.planner.route(`acct-${i}`)).placement.shard);
  await seeder.close();

  const byShard = new Map<string, string[]>();
  for (const [k, s] of shardOf) byShard.set(s, [...(byShard.get(s) ?? []), k]);
  const home = cluster.shards[0];
  const local = byShard.get(home.name)!;
  const others = [...shardOf.keys()].filter((k) => shardOf.get(k) !== home.name);
  let rng = 7;
  const pick = <T>(xs: T[]) => xs[(rng = (rng * 1103515245 + 12345) % 2147483648) % xs.length];
  // Amount 1 in a random direction keeps balances near 1000 for any run length.
  const pair = (a: string[], b: string[]): [string, string] => {
    for (;;) {
      const x = pick(a), y = pick(b);
      if (x !== y) return rng % 2 ? [x, y] : [y, x];
    }
  };

  const router = await startRouterProcess(cluster, { transactions: {} });
  const n = home.nodes[0];
  const direct = postgres({ host: n.host, port: n.port, database: n.database, user: n.user, password: n.password, max: concurrency, onnotice: () => {} });

  const rows: { name: string; result: LoadResult; routerCpuUsPerOp?: number }[] = [];
  const measure = async (name: string, op: () => Promise<unknown>, viaRouter: boolean) => {
    await closedLoop(concurrency, 1000, op); // warm-up: connections, prepared statements, JIT
    const cpu0 = viaRouter ? processCpuUs(router.process.pid!) : 0;
    const result = await closedLoop(concurrency, seconds * 1000, op);
    const routerCpuUsPerOp = viaRouter ? (processCpuUs(router.process.pid!) - cpu0) / Math.max(1, result.ops) : undefined;
    rows.push({ name, result, routerCpuUsPerOp });
    console.log(`${name}: ${result.opsPerSec.toFixed(0)} ops/s, p50 ${result.p50Ms.toFixed(2)} ms, p99 ${result.p99Ms.toFixed(2)} ms, errors ${result.errors}${result.firstError ? ` (${result.firstError})` : ""}`);
  };

  await measure("local transaction, direct postgres.js (one shard)", () => {
    const [a, b] = pair(local, local);
    return direct.begin(async (tx) => {
      await tx`update accounts set balance = balance - 1 where id = ${a} returning balance`;
      await tx`update accounts set balance = balance + 1 where id = ${b} returning balance`;
    });
  }, false);
  await measure("Transfer, same shard (router, local transaction)", () => {
    const [a, b] = pair(local, local);
    return router.client.transfer({ fromKey: a, toKey: b, amount: 1n, requestId: randomUUID() });
  }, true);
  await measure("Transfer, cross shard (router, two-phase commit)", () => {
    const [a, b] = pair(local, others);
    return router.client.transfer({ fromKey: a, toKey: b, amount: 1n, requestId: randomUUID() });
  }, true);

  await direct.end();
  await router.kill("SIGINT");

  const base = rows[0].result.opsPerSec;
  const sameShard = rows[1].result.opsPerSec;
  const table = [
    `| row | ops/s | p50 ms | p99 ms | router CPU µs/op | client CPU µs/op | × direct | × same-shard Transfer |`,
    `|---|---:|---:|---:|---:|---:|---:|---:|`,
    ...rows.map(({ name, result: r, routerCpuUsPerOp }) =>
      `| ${name} | ${r.opsPerSec.toFixed(0)} | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${routerCpuUsPerOp?.toFixed(0) ?? "–"} | ${r.clientCpuUsPerOp.toFixed(0)} | ${(r.opsPerSec / base).toFixed(2)} | ${(r.opsPerSec / sameShard).toFixed(2)} |`),
  ].join("\n");
  const stamp = new Date().toISOString().slice(0, 19).replace(/:/g, "-");
  const meta = { date: new Date().toISOString(), node: process.version, cpus: (await import("node:os")).cpus().length, seconds, concurrency };
  writeFileSync(join(import.meta.dirname, "results", `transfer-${stamp}.json`), JSON.stringify({ meta, rows }, null, 2));
  writeFileSync(join(import.meta.dirname, "results", `transfer-${stamp}.md`), `# Transfer benchmark ${meta.date}\n\n${seconds} s per row, ${concurrency} in flight, Node ${meta.node}, ${meta.cpus} cores (client, router and Postgres share them).\n\n${table}\n`);
  console.log(`\n${table}`);
} finally {
  await cluster.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
