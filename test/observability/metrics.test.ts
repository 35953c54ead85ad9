// GET /metrics on the router's one port: the metric families, exact request counts per RPC, shard and
// Connect code over both wire protocols, pool gauges while statements run and wait, two-phase commit
// outcomes, recovery and the in-doubt count; and nothing secret (keys, SQL, passwords) in the text.
import { randomUUID } from "node:crypto";
import * as assert from "uvu/assert";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import { Catalog } from "../../server/catalog/catalog.js";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { codeNames, lineLogger } from "../../server/observability/logger.js";
import { type RunningRouter, startRouter } from "../../server/router.js";
import { DecisionLog } from "../../server/transactions/decision-log.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";
import { failure } from "../harness/failure.js";
import { scrape } from "./scrape.js";

const requests = "shardrouter_rpc_requests_total";
const duration = "shardrouter_rpc_duration_seconds";
const poolMax = 2;
let t: TestRouter;
const str = (value: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value } });

/** Keys on one shard and on two different shards, by the router's own placement (not via RPCs). */
async function keys(): Promise<{ same: [string, string]; cross: [string, string] }> {
  const shardOf = new Map<string, string>();
  for (let i = 0; i < 40; i++) shardOf.set(`acct-${i}`, (await t.router.planner.route(`acct-${i}`)).shard.name);
  const all = [...shardOf.keys()];
  const a = all[0];
  return {
    same: [a, all.find((k) => k !== a && shardOf.get(k) === shardOf.get(a))!],
    cross: [a, all.find((k) => shardOf.get(k) !== shardOf.get(a))!],
  };
}

function primaryOf(shard: string) {
  return t.cluster.shards.find((s) => s.name === shard)!.nodes.find((n) => n.role === "primary")!;
}

test.before(hook(async () => {
  // Recovery runs once at start and then not again during the tests (its statements would take pool slots).
  t = await startTestRouter({ shards: 2, pool: { max: poolMax }, transactions: { recoveryIntervalMs: 600_000 } });
  await seedDemoAccounts(t.router.planner);
}));
test.after(hook(async () => { await t?.stop(); }));

test("GET /metrics answers on the HTTP/1.1 side with the router's metric families", async () => {
  await t.connect.route({ key: "acct-1" });
  const m = await scrape(t.router.url);
  assert.is(m.status, 200);
  assert.match(m.contentType, /^text\/plain; version=0\.0\.4/);
  for (const family of [
    requests, duration, "shardrouter_pool_in_use", "shardrouter_pool_waiting", "shardrouter_pool_max",
    "shardrouter_node_breaker_state", "shardrouter_node_up", "shardrouter_node_writable", "shardrouter_node_fenced",
    "shardrouter_node_replication_lag_seconds", "shardrouter_node_timeline", "shardrouter_transactions_total",
    "shardrouter_recovery_resolved_total", "shardrouter_transactions_in_doubt", "shardrouter_shard_writer_changes_total",
    "process_cpu_user_seconds_total", "nodejs_eventloop_lag_seconds",
  ]) assert.ok(m.families.has(family), `no ${family} in /metrics`);
  for (const shard of t.config.shards) {
    for (const node of shard.nodes) {
      const labels = { shard: shard.name, node: node.name! };
      assert.is(m.value("shardrouter_node_up", labels), 1, `${node.name} up`);
      assert.is(m.value("shardrouter_node_writable", labels), node.role === "primary" ? 1 : 0, `${node.name} writable`);
      assert.is(m.value("shardrouter_node_breaker_state", { ...labels, state: "closed" }), 1, `${node.name} breaker closed`);
      assert.is(m.value("shardrouter_node_breaker_state", { ...labels, state: "open" }), 0, `${node.name} breaker not open`);
      assert.is(m.value("shardrouter_pool_max", labels), poolMax);
      assert.ok(m.value("shardrouter_node_timeline", labels) >= 1, `${node.name} timeline`);
    }
  }
  // Other paths still reach the RPC handler, not the metrics.
  const other = await scrape(t.router.url, "/metricsz");
  assert.is.not(other.status, 200);
});

test("requests are counted exactly, per RPC, shard and code, over Connect and gRPC", async () => {
  const key = "acct-7";
  const shard = (await t.router.planner.route(key)).shard.name;
  const before = await scrape(t.router.url);
  for (let i = 0; i < 5; i++) await t.connect.route({ key });
  for (let i = 0; i < 3; i++) await t.grpc.executeOnShard({ key, sql: "select balance from accounts where id = $1", params: [str(key)] });
  await t.connect.executeOnAll({ sql: "select count(*) as n from accounts" });
  const after = await scrape(t.router.url);
  const delta = (name: string, labels: Record<string, string>) => after.value(name, labels) - before.value(name, labels);

  assert.is(delta(requests, { rpc: "Route", shard, code: "ok" }), 5);
  assert.is(delta(requests, { rpc: "ExecuteOnShard", shard, code: "ok" }), 3);
  assert.is(delta(requests, { rpc: "ExecuteOnAll", shard: "", code: "ok" }), 1);
  assert.is(delta(requests, {}), 9, "nothing else was counted (a scrape is not an RPC)");
  assert.is(delta(`${duration}_count`, { rpc: "ExecuteOnShard", shard }), 3);
  assert.is(delta(`${duration}_bucket`, { rpc: "ExecuteOnShard", shard, le: "+Inf" }), 3);
  assert.ok(delta(`${duration}_sum`, { rpc: "ExecuteOnShard", shard }) > 0, "latency adds up");
  assert.ok(after.has(requests, { service: "shardrouter.v1.RouterService", rpc: "Route", shard, code: "ok" }));
  // Buckets are cumulative: never decreasing with le.
  const buckets = after.samples.filter((s) => s.name === `${duration}_bucket` && s.labels.rpc === "ExecuteOnShard" && s.labels.shard === shard);
  for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value, "cumulative buckets");
});

test("errors are counted by Connect code, with the shard when the failure names one", async () => {
  const key = "acct-3";
  const shard = (await t.router.planner.route(key)).shard.name;
  const before = await scrape(t.router.url);
  const undefinedTable = await failure(t.connect.executeOnShard({ key, sql: "select * from no_such_table_here" }));
  const emptyKey = await failure(t.grpc.route({ key: "" }));
  const unknownAccount = await failure(t.connect.transfer({ fromKey: "no-such-account", toKey: key, amount: 1n, requestId: randomUUID() }));
  const after = await scrape(t.router.url);
  const delta = (name: string, labels: Record<string, string>) => after.value(name, labels) - before.value(name, labels);

  assert.is(codeNames[undefinedTable.code], "invalid_argument");
  assert.is(delta(requests, { rpc: "ExecuteOnShard", shard, code: "invalid_argument" }), 1);
  assert.is(codeNames[emptyKey.code], "invalid_argument");
  assert.is(delta(requests, { rpc: "Route", shard: "", code: "invalid_argument" }), 1);
  assert.is(codeNames[unknownAccount.code], "not_found");
  assert.is(delta(requests, { rpc: "Transfer", code: "not_found" }), 1);
  assert.is(delta(requests, { code: "ok" }), 0);
  assert.is(delta(`${duration}_count`, { rpc: "ExecuteOnShard", shard }), 1, "failures are timed too");
});

test("pool gauges show statements running and waiting on a node, and back to zero after", async () => {
  const key = "acct-11";
  const shard = (await t.router.planner.route(key)).shard.name;
  const primary = primaryOf(shard);
  const labels = { shard, node: primary.name };
  const direct = t.direct(primary);
  const holder = await direct.reserve();
  const lock = 770_077;
  await holder`begin`;
  await holder`select pg_advisory_xact_lock(${lock})`;
  // pool.max + 1 statements that block on the lock: pool.max run (waiting in Postgres), one waits in the router.
  const calls = Array.from({ length: poolMax + 1 }, () => t.connect.executeOnShard({ key, sql: `select pg_advisory_xact_lock(${lock})` }));
  let during;
  try {
    await waitFor("the router's statements to wait on the lock", async () => {
      const [{ n }] = await direct`select count(*)::int as n from pg_stat_activity where application_name = 'shardrouter' and wait_event_type = 'Lock'`;
      return n === poolMax ? true : undefined;
    });
    during = await waitFor("the third statement to queue in the router", async () => {
      const m = await scrape(t.router.url);
      return m.value("shardrouter_pool_waiting", labels) === 1 ? m : undefined;
    });
  } finally {
    await holder`commit`;
    holder.release();
  }
  await Promise.all(calls);
  assert.is(during.value("shardrouter_pool_in_use", labels), poolMax);
  const after = await scrape(t.router.url);
  assert.is(after.value("shardrouter_pool_in_use", labels), 0);
  assert.is(after.value("shardrouter_pool_waiting", labels), 0);
});

test("two-phase commit outcomes: one phase, two phases, rolled back", async () => {
  const { same, cross } = await keys();
  await t.connect.transfer({ fromKey: same[0], toKey: same[1], amount: 1n, requestId: randomUUID() }); // warm-up
  const before = await scrape(t.router.url);
  const one = await t.connect.transfer({ fromKey: same[0], toKey: same[1], amount: 1n, requestId: randomUUID() });
  const two = await t.connect.transfer({ fromKey: cross[0], toKey: cross[1], amount: 1n, requestId: randomUUID() });
  const tooMuch = await failure(t.connect.transfer({ fromKey: cross[0], toKey: cross[1], amount: 1_000_000n, requestId: randomUUID() }));
  const after = await scrape(t.router.url);
  const delta = (outcome: string) => after.value("shardrouter_transactions_total", { outcome }) - before.value("shardrouter_transactions_total", { outcome });
  const sameShard = (await t.router.planner.route(same[0])).shard.name;
  const transfers = (labels: Record<string, string>) => after.value(requests, { rpc: "Transfer", ...labels }) - before.value(requests, { rpc: "Transfer", ...labels });

  assert.is(one.twoPhase, false);
  assert.is(two.twoPhase, true);
  assert.is(codeNames[tooMuch.code], "failed_precondition");
  assert.is(delta("committed_one_phase"), 1);
  assert.is(delta("committed_two_phase"), 1);
  assert.is(delta("rolled_back"), 1);
  assert.is(delta("in_doubt"), 0);
  assert.is(after.value("shardrouter_transactions_in_doubt"), 0);
  assert.is(transfers({ shard: sameShard, code: "ok" }), 1, "a one-shard Transfer has its shard");
  assert.is(transfers({ shard: "", code: "ok" }), 1, "a cross-shard Transfer has none");
  assert.is(transfers({ code: "failed_precondition" }), 1);
});

test("in-doubt count and recovered commit/abort, with structured recovery log lines", async () => {
  const shard = t.config.shards[0].name;
  const direct = t.direct(primaryOf(shard));
  await direct`create table if not exists obs_scratch (id text primary key)`;
  const catalog = await Catalog.open(t.config.catalog!);
  let withoutCatalog: RunningRouter | undefined;
  let recovering: RunningRouter | undefined;
  const lines: string[] = [];
  try {
    const commitGid = `sr_obstest_c${Date.now()}`;
    const abortGid = `sr_obstest_a${Date.now()}`;
    await new DecisionLog(catalog).decide(commitGid, "commit", [shard], "obstest");
    // Left prepared as a dead router leaves them: by the router's role (only it or a superuser may finish them).
    const deadRouter = t.asRouter(primaryOf(shard));
    for (const [gid, id] of [[commitGid, "committed-row"], [abortGid, "aborted-row"]]) {
      const conn = await deadRouter.reserve();
      await conn`begin`;
      await conn`insert into obs_scratch (id) values (${id})`;
      await conn.unsafe(`prepare transaction '${gid}'`);
      conn.release();
    }
    // A router without a catalog cannot decide: both stay in doubt.
    const { catalog: _, ...noCatalog } = t.config;
    withoutCatalog = await startRouter({ ...noCatalog, listen: { ...t.config.listen, port: 0 }, transactions: { ...t.config.transactions, recoveryIntervalMs: 50, inDoubtGraceMs: 0 } });
    const url = withoutCatalog.url;
    await waitFor("the in-doubt gauge to count both", async () => ((await scrape(url)).value("shardrouter_transactions_in_doubt") === 2 ? true : undefined));
    await withoutCatalog.close();
    withoutCatalog = undefined;

    recovering = await startRouter(
      { ...t.config, listen: { ...t.config.listen, port: 0 }, transactions: { ...t.config.transactions, recoveryIntervalMs: 50, inDoubtGraceMs: 0 } },
      { logger: lineLogger((l) => lines.push(l)) },
    );
    const rurl = recovering.url;
    const m = await waitFor("recovery to settle both", async () => {
      const s = await scrape(rurl);
      return s.value("shardrouter_recovery_resolved_total", { shard }) === 2 && s.value("shardrouter_transactions_in_doubt") === 0 ? s : undefined;
    });
    assert.is(m.value("shardrouter_recovery_resolved_total", { shard, decision: "commit" }), 1);
    assert.is(m.value("shardrouter_recovery_resolved_total", { shard, decision: "abort" }), 1);
    assert.equal((await direct`select id from obs_scratch order by id`).map((r) => r.id), ["committed-row"]);

    const events = lines.map((l) => JSON.parse(l)).filter((e) => e.transactionId === commitGid || e.transactionId === abortGid);
    const commit = events.find((e) => e.transactionId === commitGid);
    const abort = events.find((e) => e.transactionId === abortGid);
    assert.ok(commit && abort, `recovery log lines for both:\n${lines.join("\n")}`);
    assert.equal([commit.level, commit.shard, commit.decision], ["notice", shard, "commit"]);
    assert.equal([abort.level, abort.shard, abort.decision], ["notice", shard, "abort"]);
    assert.is(typeof commit.ageMs, "number");
  } finally {
    await withoutCatalog?.close();
    await recovering?.close();
    await catalog.close();
  }
});

test("no key, SQL text or credential in /metrics; every label value is bounded", async () => {
  const secretKey = "obs-secret-key-4417";
  await t.connect.executeOnShard({ key: secretKey, sql: "select 1 as obs_marker_col_9931" });
  await failure(t.connect.executeOnShard({ key: secretKey, sql: "select * from obs_marker_table_9931" }));
  await failure(t.connect.executeOnShard({ key: secretKey, sql: "select $1::int8 as n", params: [str("obs-param-value-6612")] }));
  const m = await scrape(t.router.url);
  const secrets = [secretKey, "obs_marker", "obs-param-value", "select ", t.cluster.routerRole.password, t.cluster.catalog.password, ...t.cluster.shards.flatMap((s) => s.nodes.map((n) => n.password))];
  for (const s of secrets) assert.not.ok(m.text.includes(s), `/metrics contains ${JSON.stringify(s)}`);
  const shards = new Set(["", ...t.config.shards.map((s) => s.name)]);
  const nodes = new Set(t.config.shards.flatMap((s) => s.nodes.map((n) => n.name!)));
  for (const s of m.samples) {
    if ("shard" in s.labels) assert.ok(shards.has(s.labels.shard), `shard label ${s.labels.shard}`);
    if ("node" in s.labels) assert.ok(nodes.has(s.labels.node), `node label ${s.labels.node}`);
    if (s.name === requests) assert.ok(codeNames.includes(s.labels.code), `code label ${s.labels.code}`);
  }
});

test.run();
