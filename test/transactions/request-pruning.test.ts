// Idempotency records are pruned after transactions.requestRetentionMs (default 7 days): older ones go,
// younger ones stay and still answer retries, a retry after the record went is applied again, and a
// record locked by a transaction in flight or prepared never holds the pass up. Records are aged by
// setting created_at back on the shards; passes are run with router.pruneRequests().
import { randomUUID } from "node:crypto";
import type postgres from "postgres";
import * as assert from "uvu/assert";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import type { LocalNode } from "../../server/dev-cluster/local-cluster.js";
import { ensureRequestLog } from "../../server/transactions/request-log.js";
import { scrape } from "../observability/scrape.js";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
const retentionS = 7 * 24 * 3600; // the default
const str = (value: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value } });

test.before(hook(async () => {
  t = await startTestRouter({ shards: 2, transactions: { recoveryIntervalMs: 600_000, inDoubtGraceMs: 600_000 } });
  await t.grpc.executeOnAll({ sql: "create table counters (id text primary key, n int not null)" });
}));
test.after(hook(async () => { await t?.stop(); }));

const directs = new Map<LocalNode, postgres.Sql>();
/** One admin connection pool per node for the whole file (t.direct opens a new one each time). */
const direct = (node: LocalNode): postgres.Sql => directs.get(node) ?? directs.set(node, t.direct(node)).get(node)!;
const primaries = (): LocalNode[] => t.cluster.shards.map((s) => s.nodes[0]);
const primaryOf = async (key: string) => {
  const { shard } = await t.router.planner.route(key);
  return t.cluster.shards.find((s) => s.name === shard.name)!.nodes[0];
};
/** One transaction on `key`'s shard, recorded under `requestId` there. */
const bump = (key: string, requestId: string) => t.grpc.executeTransaction({
  requestId,
  statements: [{ key, sql: "insert into counters (id, n) values ($1, 1) on conflict (id) do update set n = counters.n + 1", params: [str(key)] }],
});
async function counter(key: string): Promise<number> {
  const [{ n }] = await direct(await primaryOf(key))<{ n: number }[]>`select n from counters where id = ${key}`;
  return n;
}
/** Sets a record's created_at `seconds` back from now, wherever it is. */
async function age(requestId: string, seconds: number): Promise<void> {
  let found = 0;
  for (const node of primaries()) {
    found += (await direct(node)`update shardrouter.requests set created_at = now() - make_interval(secs => ${seconds}) where request_id = ${requestId}`).count;
  }
  assert.is(found, 1, `one record of ${requestId}`);
}
/** Which of `ids` still have a record (committed) on some shard. */
async function kept(ids: string[]): Promise<string[]> {
  const found: string[] = [];
  for (const node of primaries()) {
    for (const r of await direct(node)<{ id: string }[]>`select request_id as id from shardrouter.requests where request_id = any(${ids})`) found.push(r.id);
  }
  return ids.filter((id) => found.includes(id));
}
const indexed = async (node: LocalNode) =>
  (await direct(node)<{ ok: boolean }[]>`select to_regclass('shardrouter.requests_created_at') is not null as ok`)[0].ok;

test("records older than the retention are deleted in batches, younger ones kept; a retry within the retention replays, one after it runs again", async () => {
  for (const node of primaries()) assert.ok(await indexed(node), "the expiry scan's index was made with the table");
  const [old, young, fresh] = ["old", "young", "fresh"].map((what) => `${what}-${randomUUID()}`);
  const [oldKey, youngKey, freshKey] = ["prune-old", "prune-young", "prune-fresh"];
  await bump(oldKey, old);
  await bump(youngKey, young);
  await bump(freshKey, fresh);
  await age(old, retentionS + 3600);
  await age(young, retentionS - 3600);
  // More expired records than three batches hold (1000 each), on one shard.
  await direct(primaries()[0])`insert into shardrouter.requests (home_key, request_id, request_hash, transaction_id, created_at)
    select 'bulk', 'bulk-' || g, '\\x00', 'none', now() - interval '30 days' from generate_series(1, 2500) g`;

  const round = await t.router.pruneRequests();
  assert.equal(round, { pruned: 2501, failedShards: [] });
  assert.equal(await kept([old, young, fresh]), [young, fresh]);
  const [{ bulk }] = await direct(primaries()[0])<{ bulk: number }[]>`select count(*)::int as bulk from shardrouter.requests where home_key = 'bulk'`;
  assert.is(bulk, 0, "every batch ran");
  const m = await scrape(t.router.url);
  assert.is(m.value("shardrouter_requests_pruned_total"), 2501);

  const replay = await bump(youngKey, young);
  assert.ok(replay.replayed, "within the retention: a replay");
  assert.is(await counter(youngKey), 1, "applied once");
  const late = await bump(oldKey, old);
  assert.not.ok(late.replayed, "after the retention the record is gone: the retry is a new request");
  assert.is(await counter(oldKey), 2, "and is applied again");
  assert.equal(await t.router.pruneRequests(), { pruned: 0, failedShards: [] }, "nothing else expired");
});

test("records locked by a transaction in flight or prepared do not hold up the pass: they are skipped, then pruned once released", async () => {
  const [prepared, open, free] = ["held-prepared", "held-open", "free"].map((what) => `${what}-${randomUUID()}`);
  const keys = { [prepared]: "prune-held-1", [open]: "prune-held-2", [free]: "prune-free" };
  for (const [id, key] of Object.entries(keys)) {
    await bump(key, id);
    await age(id, 30 * 24 * 3600);
  }
  const gid = `prune_test_${randomUUID().slice(0, 8)}`;
  const preparedOn = direct(await primaryOf(keys[prepared]));
  const unwritten = `unwritten-${randomUUID()}`;
  // A prepared transaction holding one expired record, and writing another (old, never committed).
  await preparedOn.begin(async (tx) => {
    await tx`select 1 from shardrouter.requests where request_id = ${prepared} for update`;
    await tx`insert into shardrouter.requests (home_key, request_id, request_hash, transaction_id, created_at)
             values ('prune-held-1', ${unwritten}, '\\x00', 'none', now() - interval '30 days')`;
    await tx.prepare(gid);
  });
  // A transaction in flight holding another.
  let release!: () => void;
  const released = new Promise<void>((r) => { release = r; });
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => { locked = r; });
  const holder = direct(await primaryOf(keys[open])).begin(async (tx) => {
    await tx`select 1 from shardrouter.requests where request_id = ${open} for update`;
    locked();
    await released;
  });
  try {
    await isLocked;
    let bound: NodeJS.Timeout | undefined;
    const round = await Promise.race([
      t.router.pruneRequests(),
      new Promise<never>((_, reject) => { bound = setTimeout(() => reject(new Error("the pass waited for a locked record")), 20_000); }),
    ]).finally(() => clearTimeout(bound));
    assert.equal(round, { pruned: 1, failedShards: [] }, "the pass finished while the locks were held");
    assert.equal(await kept([prepared, open, free]), [prepared, open], "locked records kept");
  } finally {
    release();
    await holder;
    await preparedOn.unsafe(`rollback prepared '${gid}'`).catch(() => {});
  }
  assert.equal(await kept([unwritten]), [], "the prepared transaction's own record never committed");
  assert.equal(await t.router.pruneRequests(), { pruned: 2, failedShards: [] });
  assert.equal(await kept([prepared, open]), []);
});

test("a request log without the expiry index gets it in place, but never waits behind a transaction holding the table", async () => {
  const node = await primaryOf("prune-index");
  const shard = t.router.planner.shards.shard((await t.router.planner.route("prune-index")).shard.name);
  await direct(node)`drop index shardrouter.requests_created_at`;
  // A prepared transaction that wrote a record holds the table against CREATE INDEX until it ends.
  const gid = `prune_test_${randomUUID().slice(0, 8)}`;
  await direct(node).begin(async (tx) => {
    await tx`insert into shardrouter.requests (home_key, request_id, request_hash, transaction_id) values ('prune-index', ${randomUUID()}, '\\x00', 'none')`;
    await tx.prepare(gid);
  });
  try {
    await ensureRequestLog(shard, AbortSignal.timeout(20_000));
    assert.not.ok(await indexed(node), "gave up waiting for the lock");
    const during = await bump("prune-index", randomUUID());
    assert.not.ok(during.replayed, "transactions go on meanwhile");
    assert.equal((await t.router.pruneRequests()).failedShards, [], "and so does pruning (scanning the table)");
  } finally {
    await direct(node).unsafe(`rollback prepared '${gid}'`).catch(() => {});
  }
  await ensureRequestLog(shard, AbortSignal.timeout(20_000));
  assert.ok(await indexed(node), "built once nothing holds the table");
});

test.run();
