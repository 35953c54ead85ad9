// `npm run bench`: the router next to the database it fronts, side by side in one run on one local
// cluster, each pair at the same concurrency and duration, with long-lived pools.
//   npm run bench [-- --quick] [--seconds 10] [--sustained-seconds 60] [--rows 100000]
//                 [--only point,sustained,scatter,transfer,pgbouncer,isolated,auth,build,reshard] [--profile DIR]
// Groups:
//   point      point select by key: direct postgres.js to the owning shard vs ExecuteOnShard through the
//              SDK (Connect over HTTP/1.1, gRPC over h2c) vs h2load sending gRPC frames, at 1/16/64 in flight;
//              Execute (no key beside the statement: the router reads it) vs ExecuteOnShard, both SDK gRPC;
//              h2load also drives two yardsticks (benchmarks/reference-server.ts): a naive connect-node
//              handler and a raw node:http2 handler, each with postgres.js and nothing else
//   sustained  one long run through the SDK: the first window vs the last (no decay with pool age)
//   scatter    count(*) and ORDER BY … LIMIT 10 over 4 shards, merged, vs one database holding every row
//   transfer   cross-shard Transfer (2PC) and same-shard Transfer vs one local transaction
//   pgbouncer  PgBouncer (transaction pooling) in front of one shard vs direct, prepared statements off
//   auth       point selects through the SDK (gRPC, 64 in flight) to the router without auth vs a second
//              router process with auth on, called with an API key and with a JWT: router CPU per call
//   isolated   a DO block (run on a connection of its own, closed after it) vs select 1, through the SDK
//   build      the compiled router (node dist/server/main.js, what every other row measures) vs the same
//              sources through tsx: start-up time and CPU, RSS, router CPU per point select (SDK gRPC)
//   reshard    8 writers with no reshard running, then while a job adds a fifth shard (copy rate, lag,
//              the writes' p50/p99/max over the job and over the cutover window); runs last
// The router runs compiled from dist/, rebuilt first (tsc) when a source is newer than the last build.
// h2load and pgbouncer rows are skipped with a note when the tool is not installed.
// Results: benchmarks/results/bench-<UTC time>.json and .md. Timing is reported, never asserted.
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import postgres from "postgres";
import type { LocalCluster } from "../server/dev-cluster/local-cluster.js";
import { withNodeSql } from "../server/dev-cluster/node-sql.js";
import { pickFreePorts } from "../server/dev-cluster/ports.js";
import { type ShardRouterClient, createClient } from "../sdk/src/node.ts";
import { decodeResult } from "../sdk/src/results.ts";
import { encodeParams } from "../sdk/src/values.ts";
import { type BenchCluster, startBenchCluster } from "./bench-cluster.js";
import type { CpuProbe } from "./closed-loop.js";
import { executeOnShardBody, runH2load } from "./h2load.js";
import { startPgBouncer } from "./pgbouncer.js";
import { type ServerProcess, spawnReference } from "./router-process.js";
import { processCpuUs, treeCpuUs } from "./process-cpu.js";
import { type Row, Rows, markdownTable, runMetadata, writeResults } from "./rows.js";
import { measureTransfers, transferTargets } from "./transfer-rows.js";
import { authTargets, measureAuth } from "./auth-rows.js";
import { which } from "./which.js";
import { measureReshard } from "./reshard-rows.js";
import { type BuildComparison, buildLines, measureBuild } from "./build-rows.js";

const allGroups = ["point", "sustained", "scatter", "transfer", "pgbouncer", "isolated", "auth", "build", "reshard"] as const;
const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean" }, seconds: { type: "string" }, "sustained-seconds": { type: "string" },
    rows: { type: "string" }, only: { type: "string" }, profile: { type: "string" },
  },
  strict: true,
});
const quick = !!args.quick;
const seconds = Number(args.seconds ?? (quick ? 1 : 10));
const warmupSeconds = quick ? 0.3 : 1;
const sustainedSeconds = Number(args["sustained-seconds"] ?? (quick ? 6 : 60));
const windowSeconds = Math.min(10, sustainedSeconds / 3);
const bulkRows = Number(args.rows ?? (quick ? 10_000 : 100_000));
const only = new Set(args.only ? args.only.split(",") : allGroups);
for (const g of only) if (!(allGroups as readonly string[]).includes(g)) throw new Error(`--only: unknown group ${g} (${allGroups.join(", ")})`);
const inFlightLevels = [1, 16, 64];
const transferInFlight = 16;
const buildInFlight = 16;
/** The router's pool.max (the config default): PgBouncer gets the same number of server connections. */
const routerPoolMax = 10;

const h2load = which("h2load");
const pgbouncer = which("pgbouncer", ["/usr/sbin", "/usr/local/sbin"]);
const log = (line: string) => console.log(line);
const loadBefore = loadavg();

// ---------------------------------------------------------------------------------------------

const pointSql = "select id, balance from accounts where id = $1";
const pointNames = {
  direct: "direct postgres.js (pool 64, prepared)",
  connect: "router: SDK, Connect over HTTP/1.1",
  grpc: "router: SDK, gRPC over h2c",
  execute: "router: SDK, gRPC over h2c, Execute (the router reads the key from the statement)",
  h2load: "router: h2load, gRPC over h2c (no Node client)",
  reference: "reference: naive connect-node handler + postgres.js (pool 10), h2load",
  raw: "reference: raw node:http2 gRPC handler + postgres.js (pool 10, no Connect), h2load",
} as const;
const noH2load = "h2load is not installed (Debian package nghttp2-client)";

async function pointSelects(
  rows: Rows, env: BenchCluster,
  { connect, grpc, routerCpu, work }: { connect: ShardRouterClient; grpc: ShardRouterClient; routerCpu: CpuProbe; work: string },
): Promise<void> {
  const group = "point select";
  const direct = env.pool(env.home.nodes[0], { max: Math.max(...inFlightLevels) });
  let k = 0;
  const nextKey = () => env.homeKeys[k++ % env.homeKeys.length];
  const viaSdk = (client: ShardRouterClient) => () => {
    const key = nextKey();
    return client.onShard(key).query(pointSql, [key]);
  };
  // The same statement through Execute: no key beside it, the router finds it in the statement (the
  // analysis of this text comes from its cache), so the pair's ratio is what reading the SQL costs.
  const viaExecute = (client: ShardRouterClient) => async () => {
    const key = nextKey();
    return decodeResult((await client.rpc.execute({ sql: pointSql, params: encodeParams([key]) })).result, {});
  };
  // Every path answers the same row before anything is timed.
  const key = env.homeKeys[0];
  const answers = {
    direct: (await direct.unsafe(pointSql, [key])).length, connect: (await viaSdk(connect)()).rows.length, grpc: (await viaSdk(grpc)()).rows.length,
    execute: (await viaExecute(grpc)()).rows.length,
  };
  for (const [name, n] of Object.entries(answers)) if (n !== 1) throw new Error(`point select through ${name} returned ${n} rows`);
  const routed = (await grpc.rpc.execute({ sql: pointSql, params: encodeParams([key]) })).shards;
  if (routed.join() !== env.home.name) throw new Error(`Execute ran the point select on ${routed.join(", ")}, not on ${env.home.name} alone`);

  // h2load drives the router and both yardsticks with the same request body.
  const [connectPort, rawPort] = await pickFreePorts(2);
  let naive: ServerProcess | undefined;
  let raw: ServerProcess | undefined;
  try {
    if (h2load) {
      naive = await spawnReference("connect", env.home.nodes[0], connectPort, routerPoolMax);
      raw = await spawnReference("raw", env.home.nodes[0], rawPort, routerPoolMax);
    }
    const h2loadRow = async (name: string, url: string, cpu: CpuProbe, n: number) => {
      if (!h2load) return rows.add({ group, name, inFlight: n, skipped: noH2load });
      const body = await executeOnShardBody(url, work, key, pointSql);
      const run = (secs: number) => runH2load({
        h2load, url: `${url}${body.path}`, bodyFile: body.bodyFile, streams: n, seconds: secs, responseBytes: body.responseBytes,
        logFile: join(work, "h2load.log"), probes: { proxy: cpu, postgres: rows.settings.postgresCpu },
      });
      await run(warmupSeconds);
      return rows.add({ group, name, inFlight: n, ...(await run(seconds)), vs: pointNames.direct, note: "one key for every request" });
    };
    for (const n of inFlightLevels) {
      await rows.measure(group, pointNames.direct, n, () => direct.unsafe(pointSql, [nextKey()], { prepare: true }));
      await rows.measure(group, pointNames.connect, n, viaSdk(connect), { vs: pointNames.direct, proxy: routerCpu });
      await rows.measure(group, pointNames.grpc, n, viaSdk(grpc), { vs: pointNames.direct, proxy: routerCpu });
      await rows.measure(group, pointNames.execute, n, viaExecute(grpc), { vs: pointNames.grpc, proxy: routerCpu });
      await h2loadRow(pointNames.h2load, env.router.url, routerCpu, n);
      await h2loadRow(pointNames.reference, `http://127.0.0.1:${connectPort}`, () => processCpuUs(naive!.pid), n);
      await h2loadRow(pointNames.raw, `http://127.0.0.1:${rawPort}`, () => processCpuUs(raw!.pid), n);
    }
  } finally {
    await naive?.stop();
    await raw?.stop();
  }
}

const sustainedGroup = "sustained";
const sustainedInFlight = 64;

/**
 * What the statement guard's "isolated" costs: each such statement opens (and afterwards closes) a
 * connection of its own, so the price is a connection's start-up (SCRAM included) next to a round trip.
 */
async function isolatedStatements(rows: Rows, env: BenchCluster, grpc: ShardRouterClient, routerCpu: CpuProbe): Promise<void> {
  const group = "isolated statement";
  const key = env.homeKeys[0];
  const shared = "router: SDK gRPC, select 1 (a pooled connection)";
  const isolated = "router: SDK gRPC, DO block (a connection of its own)";
  for (const n of [1, 2]) {
    await rows.measure(group, shared, n, () => grpc.onShard(key).query("select 1"), { proxy: routerCpu });
    await rows.measure(group, isolated, n, () => grpc.onShard(key).query("do $$begin end$$"), { vs: shared, proxy: routerCpu });
  }
}

async function sustained(rows: Rows, env: BenchCluster, grpc: ShardRouterClient, routerCpu: CpuProbe): Promise<void> {
  let k = 0;
  const whole = await rows.measure(sustainedGroup, `router: SDK gRPC, ${sustainedSeconds} s`, sustainedInFlight, () => {
    const key = env.homeKeys[k++ % env.homeKeys.length];
    return grpc.onShard(key).query(pointSql, [key]);
  }, { proxy: routerCpu, windowMs: windowSeconds * 1000, seconds: sustainedSeconds });
  const windows = whole.windows ?? [];
  const first = `first ${windowSeconds} s`;
  rows.add({ group: sustainedGroup, name: first, inFlight: sustainedInFlight, ...windows[0] });
  rows.add({ group: sustainedGroup, name: `last ${windowSeconds} s`, inFlight: sustainedInFlight, ...windows[windows.length - 1], vs: first });
}

/** The reshard rows' notes: the longest write, the copy rate, the lag, the fence. */
function reshardLines(all: readonly Row[]): string[] {
  const notes = all.filter((r) => r.group === "reshard" && r.note);
  return notes.length ? ["## Resharding", "", ...notes.map((r) => `- ${r.name}: ${r.note}`), ""] : [];
}

function sustainedLines(all: readonly Row[]): string[] {
  const whole = all.find((r) => r.group === sustainedGroup && r.windows);
  if (!whole?.windows) return [];
  return [`Sustained run, ops/s per ${windowSeconds} s window: ${whole.windows.map((w) => w.opsPerSec.toFixed(0)).join(", ")}.`, ""];
}

const scatterGroup = "scatter-gather";
const scatterQueries = [
  { name: "count(*)", sql: "select count(*) as n from accounts", merge: { aggregates: { n: "count" as const } } },
  { name: "top 10 by balance", sql: "select id, balance from accounts order by balance desc, id limit 10", merge: { orderBy: ["balance desc", "id"], limit: 10 } },
];

async function scatterGather(rows: Rows, env: BenchCluster, grpc: ShardRouterClient, routerCpu: CpuProbe): Promise<void> {
  const single = env.pool({ ...env.cluster.catalog, database: singleDatabase }, { max: 16 });
  for (const q of scatterQueries) {
    // The merged answer must be the single database's answer, or the timing means nothing.
    const expected = (await single.unsafe(q.sql)).map((r) => `${r.n ?? ""}${r.id ?? ""}:${r.balance ?? ""}`).join(",");
    const merged = (await grpc.all(q.sql, [], q.merge)).rows.map((r) => `${r.n ?? ""}${r.id ?? ""}:${r.balance ?? ""}`).join(",");
    if (merged !== expected) throw new Error(`${q.name}: ExecuteOnAll answered ${merged}, one database ${expected}`);
  }
  for (const n of [1, 16]) {
    for (const q of scatterQueries) {
      const base = `${q.name}: one database holding every row (direct postgres.js)`;
      await rows.measure(scatterGroup, base, n, () => single.unsafe(q.sql, [], { prepare: true }));
      await rows.measure(scatterGroup, `${q.name}: ExecuteOnAll over 4 shards, merged (SDK gRPC)`, n, () => grpc.all(q.sql, [], q.merge), { vs: base, proxy: routerCpu });
    }
  }
}

const singleDatabase = "allrows";

/** `rows` more accounts (bulk-N, balances spread out) on their shards, and every row in one more database. */
async function seedBulkRows(cluster: LocalCluster, shardOf: (key: string) => Promise<string>, count: number): Promise<void> {
  const byShard = new Map<string, { ids: string[]; balances: number[] }>();
  let rng = 12345;
  for (let i = 0; i < count; i++) {
    const id = `bulk-${i}`;
    const shard = await shardOf(id);
    if (!byShard.has(shard)) byShard.set(shard, { ids: [], balances: [] });
    rng = (rng * 1103515245 + 12345) % 2147483648;
    byShard.get(shard)!.ids.push(id);
    byShard.get(shard)!.balances.push(rng % 1_000_000);
  }
  // Arrays go as literal text: the keys and numbers need no quoting.
  const insert = (sql: postgres.Sql, ids: string[], balances: (number | string)[]) =>
    sql.unsafe("insert into accounts (id, balance) select * from unnest($1::text[], $2::int8[])", [`{${ids.join(",")}}`, `{${balances.join(",")}}`]);
  const all: { ids: string[]; balances: string[] } = { ids: [], balances: [] };
  for (const shard of cluster.shards) {
    await withNodeSql(shard.nodes[0], async (sql) => {
      const part = byShard.get(shard.name);
      if (part) await insert(sql, part.ids, part.balances);
      await sql`vacuum analyze accounts`;
      for (const r of await sql`select id, balance::text as balance from accounts`) {
        all.ids.push(r.id);
        all.balances.push(r.balance);
      }
    });
  }
  await withNodeSql(cluster.catalog, (sql) => sql.unsafe(`create database ${singleDatabase}`));
  await withNodeSql({ ...cluster.catalog, database: singleDatabase }, async (sql) => {
    await sql`create table accounts (id text primary key, balance bigint not null check (balance >= 0))`;
    await insert(sql, all.ids, all.balances);
    await sql`vacuum analyze accounts`;
  });
}

async function pgBouncerRows(rows: Rows, env: BenchCluster): Promise<void> {
  const group = "pgbouncer";
  const n = 64;
  const base = "direct postgres.js (pool 64, prepare off)";
  const name = `PgBouncer, transaction pooling (pool ${routerPoolMax}), prepare off`;
  if (!pgbouncer) {
    rows.add({ group, name, inFlight: n, skipped: "pgbouncer is not installed (Debian package pgbouncer)" });
    return;
  }
  const node = env.home.nodes[0];
  const bouncer = await startPgBouncer(pgbouncer, node, routerPoolMax);
  try {
    let k = 0;
    const nextKey = () => env.homeKeys[k++ % env.homeKeys.length];
    const direct = env.pool(node, { max: n, prepare: false });
    const pooled = env.pool({ ...node, port: bouncer.port }, { max: n, prepare: false });
    await rows.measure(group, base, n, () => direct.unsafe(pointSql, [nextKey()]));
    await rows.measure(group, name, n, () => pooled.unsafe(pointSql, [nextKey()]), { vs: base, proxy: () => processCpuUs(bouncer.pid) });
    await pooled.end({ timeout: 5 });
  } finally {
    await bouncer.stop();
  }
}

// ---------------------------------------------------------------------------------------------

interface Check { target: string; measured: string; met?: boolean }

function targets(all: readonly Row[]): Check[] {
  const find = (group: string, name: string, inFlight?: number) => all.find((r) => r.group === group && r.name === name && (inFlight === undefined || r.inFlight === inFlight) && !r.skipped);
  const f = (x: number | undefined, d = 2) => (x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(d));
  const checks: Check[] = [];
  /** Parts without `ok` are context: shown in parentheses, not judged. */
  const check = (target: string, parts: { label: string; value?: number; ok?: (v: number) => boolean; digits?: number }[]) => {
    const known = parts.filter((p) => p.ok && p.value !== undefined && Number.isFinite(p.value));
    checks.push({
      target,
      measured: parts.map((p) => (p.ok ? `${p.label} ${f(p.value, p.digits)}` : `(${p.label} ${f(p.value, p.digits)})`)).join("; "),
      met: known.length ? known.every((p) => p.ok!(p.value!)) : undefined,
    });
  };
  const g = "point select";
  const h2 = find(g, pointNames.h2load, 64);
  const grpc64 = find(g, pointNames.grpc, 64);
  const connect64 = find(g, pointNames.connect, 64);
  check("router CPU per ExecuteOnShard point select ≤ 50 µs", [
    { label: "h2load @64 µs", value: h2?.cpuUsPerOp?.proxy, ok: (v) => v <= 50, digits: 0 },
    { label: "through the SDK gRPC client @64 µs", value: grpc64?.cpuUsPerOp?.proxy, digits: 0 },
    { label: "h2load @1 µs", value: find(g, pointNames.h2load, 1)?.cpuUsPerOp?.proxy, digits: 0 },
    { label: "the naive reference handler on this machine @64 µs", value: find(g, pointNames.reference, 64)?.cpuUsPerOp?.proxy, digits: 0 },
    { label: "a raw node:http2 handler without Connect @64 µs", value: find(g, pointNames.raw, 64)?.cpuUsPerOp?.proxy, digits: 0 },
  ]);
  check("SDK client CPU per call ≤ 40 µs", [
    { label: "gRPC @64 µs", value: grpc64?.cpuUsPerOp?.client, ok: (v) => v <= 40, digits: 0 },
    { label: "Connect @64 µs", value: connect64?.cpuUsPerOp?.client, ok: (v) => v <= 40, digits: 0 },
  ]);
  check("SDK throughput at 64 in flight ≥ 0.4× direct postgres.js", [
    { label: "gRPC ×", value: grpc64?.opsRatio, ok: (v) => v >= 0.4 },
    { label: "Connect ×", value: connect64?.opsRatio, ok: (v) => v >= 0.4 },
  ]);
  const last = all.find((r) => r.group === sustainedGroup && r.vs);
  check(`no decay: last ${windowSeconds} s ≥ 0.9× first ${windowSeconds} s of a ${sustainedSeconds} s run`, [
    { label: "last/first", value: last?.opsRatio, ok: (v) => v >= 0.9 },
  ]);
  check("ExecuteOnAll over 4 shards: p50 ≤ 1.2× the single-database query (1 in flight)", scatterQueries.map((q) => ({
    label: `${q.name} ×`, value: find(scatterGroup, `${q.name}: ExecuteOnAll over 4 shards, merged (SDK gRPC)`, 1)?.p50Ratio, ok: (v: number) => v <= 1.2,
  })));
  checks.push(...transferTargets(all));
  checks.push(...authTargets(all));
  return checks;
}

async function main(): Promise<void> {
  const env = await startBenchCluster({
    seed: (cluster, shardOf) => seedBulkRows(cluster, shardOf, bulkRows), profileDir: args.profile, log, spareShards: only.has("reshard") ? 1 : 0,
  });
  const work = mkdtempSync(join(tmpdir(), "shardrouter-bench-work-"));
  const clients: { close(): void }[] = [];
  try {
    const postmasters = env.postmasterPids();
    const routerCpu: CpuProbe = () => processCpuUs(env.router.pid);
    const rows = new Rows({ seconds, warmupSeconds, postgresCpu: () => treeCpuUs(postmasters), log });
    const connect = createClient({ baseUrl: env.router.url, protocol: "connect" });
    const grpc = createClient({ baseUrl: env.router.url, protocol: "grpc" });
    clients.push(connect, grpc);

    if (only.has("point")) await pointSelects(rows, env, { connect, grpc, routerCpu, work });
    if (only.has("sustained")) await sustained(rows, env, grpc, routerCpu);
    if (only.has("scatter")) await scatterGather(rows, env, grpc, routerCpu);
    if (only.has("transfer")) await measureTransfers(rows, env, grpc, routerCpu, transferInFlight);
    if (only.has("pgbouncer")) await pgBouncerRows(rows, env);
    if (only.has("isolated")) await isolatedStatements(rows, env, grpc, routerCpu);
    if (only.has("auth")) await measureAuth(rows, env, routerCpu, 64, seconds * 3);
    const build: BuildComparison | undefined = only.has("build")
      ? await measureBuild(rows, env, { inFlight: buildInFlight, seconds, starts: quick ? 1 : 3, rounds: 3, log })
      : undefined;
    if (only.has("reshard")) await measureReshard(rows, env, env.cluster.shards[env.cluster.shards.length - 1].name, seconds, log);

    const meta = runMetadata({
      quick, seconds, warmupSeconds, sustainedSeconds, windowSeconds, bulkRows: bulkRows + 1000, groups: [...only],
      loadavgAtStart: loadBefore, routerPoolMax, router: "compiled: node dist/server/main.js", h2load: h2load ?? null, pgbouncer: pgbouncer ?? null,
    });
    const checks = targets(rows.rows);
    const table = markdownTable(rows.rows);
    const md = [
      `# shardrouter benchmark ${meta.date}`, "",
      `Router at commit ${meta.commit ?? "unknown"}, compiled (node dist/server/main.js). Node ${meta.node}, ${meta.cpus} cores (${meta.cpuModel}); client, router, Postgres${pgbouncer ? ", PgBouncer" : ""} and h2load share them. ` +
        `Load average before: ${loadBefore.map((x) => x.toFixed(2)).join(" ")}, after: ${(meta.loadavgAtEnd as number[]).map((x) => x.toFixed(2)).join(" ")}.`,
      `${seconds} s per row after ${warmupSeconds} s of warm-up; sustained run ${sustainedSeconds} s in ${windowSeconds} s windows; ` +
        `${bulkRows + 1000} rows in \`accounts\` over 4 shards; router pool.max ${routerPoolMax} per node. Router and proxy CPU from /proc/<pid>/stat, ` +
        `client CPU from process.cpuUsage (h2load: its own CPU time), Postgres CPU of every server process of the cluster; ` +
        `"other work" is the machine's busy CPU that none of the row's processes used (other jobs on the box: noise).`, "",
      table, "",
      ...sustainedLines(rows.rows),
      ...buildLines(rows.rows, build),
      ...reshardLines(rows.rows),
      "## Targets (issue 6)", "",
      ...checks.map((c) => `- ${c.met === undefined ? "n/a" : c.met ? "met" : "**missed**"}: ${c.target} — measured ${c.measured}`), "",
    ].join("\n");
    const name = `bench${quick ? "-quick" : ""}${only.size < allGroups.length ? `-${[...only].join("+")}` : ""}`;
    const files = writeResults(name, { meta, rows: rows.rows, targets: checks, ...(build ? { build } : {}) }, md);
    console.log(`\n${md}\n${files.join("\n")}`);
  } finally {
    for (const c of clients) c.close();
    await env.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
