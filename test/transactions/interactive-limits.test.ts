// Interactive transactions against their limits: the count per router and per node (pooled
// statements keep working while sessions are at their cap), the max lifetime (a running statement
// is cancelled), a node that dies under a session, and a router that shuts down with sessions open.
// Each ends with every connection given back. Waits are on conditions, never sleeps.
import { Code } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createClient } from "@connectrpc/connect";
import type postgres from "postgres";
import * as assert from "uvu/assert";
import { RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import { ConfigError, parseConfig } from "../../server/config/config.js";
import { devConfig } from "../../server/dev-cluster/dev-config.js";
import { startRouter } from "../../server/router.js";
import { assertCode } from "../auth/fixtures.js";
import { scrape } from "../observability/scrape.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
/** A key on each shard, and each shard's primary as the superuser. */
const keyOn = new Map<string, string>();
const admins = new Map<string, postgres.Sql>();
let shardA: string;
let shardB: string;
const lifetimeMs = 3000;

test.before(hook(async () => {
  t = await startTestRouter({ shards: 2, pool: { max: 4 }, transactions: { interactive: { max: 3, maxPerNode: 2, maxLifetimeMs: lifetimeMs } } });
  for (let i = 0; keyOn.size < 2; i++) {
    const { shard } = await t.router.planner.route(`key-${i}`);
    if (!keyOn.has(shard.name)) keyOn.set(shard.name, `key-${i}`);
  }
  [shardA, shardB] = [...keyOn.keys()].sort();
  for (const s of t.cluster.shards) {
    const sql = t.direct(s.nodes[0]);
    admins.set(s.name, sql);
    await sql`create table items (id text primary key, n int not null)`;
    await sql`insert into items values ('row', 1)`;
  }
}));
test.after(hook(async () => { await t?.stop(); }));

const primaryOf = (shard: string) => t.router.planner.shards.shard(shard).nodes[0];

async function openGauge(url = t.router.url): Promise<number> {
  return (await scrape(url)).value("shardrouter_interactive_transactions_open");
}

/** Every shard: no session counted, no router backend idle in a transaction, no slot held. */
async function allReleased(what: string, url = t.router.url): Promise<void> {
  await waitFor(`${what}: every interactive transaction released`, async () => {
    if ((await openGauge(url)) !== 0) return undefined;
    for (const admin of admins.values()) {
      const rows = await admin`select 1 from pg_stat_activity where application_name = 'shardrouter' and state like 'idle in transaction%'`;
      if (rows.length) return undefined;
    }
    // A slot comes back when its statement has settled, which may be just after the gauge moved (e.g. a
    // Begin refused while a node restarts): wait for it, so only a slot that never returns fails.
    return [shardA, shardB].every((s) => primaryOf(s).admission.inUse === 0) || undefined;
  });
  for (const s of [shardA, shardB]) assert.is(primaryOf(s).admission.inUse, 0, `${what}: no slot held on ${s}`);
}

async function rowValue(shard: string): Promise<number> {
  const [{ n }] = await admins.get(shard)!<{ n: number }[]>`select n from items where id = 'row'`;
  return n;
}

/** Another writer takes the row's lock (waiting up to 10 s for it) and sets it. */
async function writeAsAnother(shard: string, n: number): Promise<void> {
  await admins.get(shard)!.begin(async (tx) => {
    await tx`set local lock_timeout = '10s'`;
    await tx`update items set n = ${n} where id = 'row'`;
  });
}

test("a node takes maxPerNode sessions, the router max; pooled statements and ExecuteTransaction keep working at the cap", async () => {
  const tokens: string[] = [];
  try {
    for (let i = 0; i < 2; i++) tokens.push((await t.grpc.beginTransaction({ key: keyOn.get(shardA)! })).transactionToken);
    const perNode = await assertCode(t.grpc.beginTransaction({ key: keyOn.get(shardA)! }), Code.ResourceExhausted, "a third on one node");
    assert.match(perNode.rawMessage, "transactions.interactive.maxPerNode = 2");
    assert.is(primaryOf(shardA).admission.inUse, 2, "two slots of four held by sessions");
    // The other two slots still serve pooled statements, two at once, and a one-shot transaction.
    const pooled = await Promise.all([
      t.grpc.executeOnShard({ key: keyOn.get(shardA)!, sql: "select pg_sleep(0.1), 1 as one" }),
      t.connect.executeOnShard({ key: keyOn.get(shardA)!, sql: "select 2 as two" }),
    ]);
    assert.is(pooled.length, 2);
    const tx = await t.grpc.executeTransaction({ requestId: `cap-${Date.now()}`, statements: [{ key: keyOn.get(shardA)!, sql: "select 1" }] });
    assert.is(tx.results.length, 1);
    tokens.push((await t.grpc.beginTransaction({ key: keyOn.get(shardB)! })).transactionToken);
    const perRouter = await assertCode(t.grpc.beginTransaction({ key: keyOn.get(shardB)! }), Code.ResourceExhausted, "a fourth on the router");
    assert.match(perRouter.rawMessage, "transactions.interactive.max = 3");
    assert.is(await openGauge(), 3);
  } finally {
    for (const token of tokens) await t.grpc.rollbackTransaction({ transactionToken: token });
  }
  await allReleased("the limits");
  // Room again.
  const again = await t.grpc.beginTransaction({ key: keyOn.get(shardA)! });
  await t.grpc.rollbackTransaction({ transactionToken: again.transactionToken });
});

test("the max lifetime rolls back a busy session: its running statement is cancelled, its lock released, the token says why", async () => {
  const before = (await scrape(t.router.url)).value("shardrouter_interactive_transactions_ended_total", { reason: "lifetime" });
  const begun = await t.grpc.beginTransaction({ key: keyOn.get(shardA)! });
  assert.is(begun.maxLifetimeMs, lifetimeMs);
  const original = await rowValue(shardA);
  await t.grpc.executeInTransaction({ transactionToken: begun.transactionToken, sql: "update items set n = n + 1 where id = 'row'" });
  const err = await assertCode(
    t.grpc.executeInTransaction({ transactionToken: begun.transactionToken, sql: "select pg_sleep(30), 'lifetime-probe'" }), Code.Aborted, "a statement running at the max lifetime");
  assert.match(err.rawMessage, `max lifetime of ${lifetimeMs} ms`);
  const running = await admins.get(shardA)!`select 1 from pg_stat_activity where query like '%lifetime-probe%' and state = 'active' and pid <> pg_backend_pid()`;
  assert.is(running.length, 0, "the statement was cancelled on Postgres before the caller was answered");
  await writeAsAnother(shardA, original + 10);
  assert.is(await rowValue(shardA), original + 10, "the session's update was rolled back");
  const after = await assertCode(t.grpc.commitTransaction({ transactionToken: begun.transactionToken }), Code.NotFound, "commit after");
  assert.match(after.rawMessage, "max lifetime");
  await allReleased("max lifetime");
  assert.is((await scrape(t.router.url)).value("shardrouter_interactive_transactions_ended_total", { reason: "lifetime" }), before + 1);
});

test("a router that shuts down rolls back its open sessions (a running statement too) and releases their connections", async () => {
  const second = await startRouter({ ...t.config, listen: { ...t.config.listen, port: 0 } });
  let closed = false;
  try {
    const client = createClient(RouterService, createGrpcTransport({ baseUrl: second.url }));
    const original = await rowValue(shardB);
    const writer = (await client.beginTransaction({ key: keyOn.get(shardB)! })).transactionToken;
    await client.executeInTransaction({ transactionToken: writer, sql: "update items set n = n + 1 where id = 'row'" });
    const sleeper = (await client.beginTransaction({ key: keyOn.get(shardA)! })).transactionToken;
    const sleeping = client.executeInTransaction({ transactionToken: sleeper, sql: "select pg_sleep(30), 'shutdown-probe'" }).then(() => "answered", () => "failed");
    await waitFor("the long statement to run", async () =>
      ((await admins.get(shardA)!`select 1 from pg_stat_activity where query like '%shutdown-probe%' and state = 'active' and pid <> pg_backend_pid()`).length ? true : undefined));
    await second.close();
    closed = true;
    assert.is(await sleeping, "failed");
    const running = await admins.get(shardA)!`select 1 from pg_stat_activity where query like '%shutdown-probe%' and state = 'active' and pid <> pg_backend_pid()`;
    assert.is(running.length, 0, "close cancelled the running statement");
    assert.is(await rowValue(shardB), original, "rolled back");
    await writeAsAnother(shardB, original); // the lock is free
    const left = await admins.get(shardB)!`select 1 from pg_stat_activity where application_name = 'shardrouter' and state like 'idle in transaction%'`;
    assert.is(left.length, 0, "nothing left idle in a transaction");
  } finally {
    if (!closed) await second.close();
  }
});

test("a node that dies under a session: the session ends, its slot and count come back; the node serves sessions again once it is back", async () => {
  const node = t.cluster.shards.find((s) => s.name === shardB)!.nodes[0];
  const token = (await t.grpc.beginTransaction({ key: keyOn.get(shardB)! })).transactionToken;
  await t.grpc.executeInTransaction({ transactionToken: token, sql: "update items set n = n + 1 where id = 'row'" });
  const original = (await rowValue(shardB)) ; // the session's update is not visible: this is the committed value
  await t.cluster.stopNode(node.name, "immediate");
  try {
    await waitFor("the session to end with its connection", async () => ((await openGauge()) === 0 ? true : undefined));
    assert.is(primaryOf(shardB).admission.inUse, 0, "its slot came back");
    const err = await assertCode(t.grpc.executeInTransaction({ transactionToken: token, sql: "select 1" }), Code.NotFound, "after the node died");
    assert.match(err.rawMessage, "was lost");
  } finally {
    await t.cluster.startNode(node.name);
  }
  assert.is(await rowValue(shardB), original, "the crash rolled the session's update back");
  const again = await waitFor("a session on the restarted node", async () => {
    try {
      return await t.grpc.beginTransaction({ key: keyOn.get(shardB)! });
    } catch {
      return undefined;
    }
  }, 20_000);
  await t.grpc.rollbackTransaction({ transactionToken: again.transactionToken });
  await allReleased("a node death");
});

test("config: maxPerNode must leave pooled statements a connection; idleTimeoutMs within maxIdleTimeoutMs", () => {
  const base = devConfig(t.cluster, { port: 0 }) as Record<string, unknown>;
  assert.throws(() => parseConfig({ ...base, pool: { max: 4 }, transactions: { interactive: { maxPerNode: 4 } } }), (e: unknown) =>
    e instanceof ConfigError && /transactions\.interactive\.maxPerNode: 4 must be below pool\.max \(4\)/.test(e.message));
  assert.throws(() => parseConfig({ ...base, transactions: { interactive: { idleTimeoutMs: 5000, maxIdleTimeoutMs: 1000 } } }), (e: unknown) =>
    e instanceof ConfigError && /transactions\.interactive\.idleTimeoutMs/.test(e.message));
  const parsed = parseConfig(base);
  assert.equal(parsed.transactions.interactive, { max: 100, idleTimeoutMs: 10_000, maxIdleTimeoutMs: 60_000, maxLifetimeMs: 300_000 });
});

test.run();
