// Transfer and ExecuteTransaction over real shards: local transactions on one shard, two-phase
// commit across shards, idempotent retries, clean failures that change nothing, no deadlocks.
import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";
import { failure } from "../harness/failure.js";
import { plainRows } from "../e2e/values.js";

let t: TestRouter;
const str = (value: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value } });
const int = (value: bigint): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "int64Value", value } });

async function balance(key: string): Promise<bigint> {
  const r = await t.connect.executeOnShard({ key, sql: "select balance from accounts where id = $1", params: [str(key)] });
  return plainRows(r.result)[0][0] as bigint;
}

async function total(): Promise<bigint> {
  const r = await t.connect.executeOnAll({ sql: "select coalesce(sum(balance), 0)::int8 as s from accounts" });
  return plainRows(r.result).reduce((sum, row) => sum + (row[0] as bigint), 0n);
}

async function preparedEverywhere(): Promise<number> {
  let n = 0;
  for (const shard of t.cluster.shards) {
    const [{ c }] = await t.direct(shard.nodes[0])`select count(*)::int as c from pg_prepared_xacts`;
    n += c;
  }
  return n;
}

/** Two keys on the same shard and two on different shards, by where the rows really are (each shard asked). */
async function keys(): Promise<{ sameA: string; sameB: string; crossA: string; crossB: string }> {
  const shardOf = new Map<string, string>();
  const ids = Array.from({ length: 50 }, (_, i) => `acct-${i}`);
  for (const shard of t.cluster.shards) {
    for (const r of await t.direct(shard.nodes[0])`select id from accounts where id = any(${ids})`) shardOf.set(r.id, shard.name);
  }
  const all = ids.filter((k) => shardOf.has(k));
  const sameA = all[0];
  const sameB = all.find((k) => k !== sameA && shardOf.get(k) === shardOf.get(sameA))!;
  const crossA = all[2];
  const crossB = all.find((k) => shardOf.get(k) !== shardOf.get(crossA))!;
  return { sameA, sameB, crossA, crossB };
}

/**
 * The commit decision recorded for a transaction, and where: only two-phase commits write one, on
 * their home shard (the one of the least key), never in the catalog.
 */
async function decisionOf(transactionId: string): Promise<{ shard: string; decision: string } | undefined> {
  const catalog = await t.direct(t.cluster.catalog)`select decision from shardrouter.decisions where gid = ${transactionId}`;
  assert.is(catalog.length, 0, "no commit decision in the catalog");
  for (const shard of t.cluster.shards) {
    const sql = t.direct(shard.nodes[0]);
    const [{ present }] = await sql`select to_regclass('shardrouter.commit_decisions') is not null as present`;
    if (!present) continue;
    const rows = await sql`select decision from shardrouter.commit_decisions where gid = ${transactionId}`;
    if (rows.length) return { shard: shard.name, decision: rows[0].decision };
  }
  return undefined;
}

test.before(hook(async () => {
  t = await startTestRouter({ shards: 4, transactions: { inDoubtGraceMs: 500, recoveryIntervalMs: 100, lockTimeoutMs: 500 } });
  await seedDemoAccounts(t.router.planner);
}));
test.after(hook(async () => { await t?.stop(); }));

test("same-shard transfer is one local transaction", async () => {
  const { sameA, sameB } = await keys();
  const res = await t.connect.transfer({ fromKey: sameA, toKey: sameB, amount: 100n, requestId: randomUUID() });
  assert.is(res.twoPhase, false);
  assert.is(res.fromShard, res.toShard);
  assert.is(await decisionOf(res.transactionId), undefined, "one local transaction: no commit decision");
  assert.is(res.fromBalance, 900n);
  assert.is(res.toBalance, 1100n);
  assert.is(await balance(sameA), 900n);
  assert.is(await balance(sameB), 1100n);
});

test("cross-shard transfer commits with two-phase commit and leaves nothing prepared", async () => {
  const { crossA, crossB } = await keys();
  const before = [await balance(crossA), await balance(crossB)];
  const res = await t.grpc.transfer({ fromKey: crossA, toKey: crossB, amount: 250n, requestId: randomUUID() });
  assert.is(res.twoPhase, true);
  assert.is.not(res.fromShard, res.toShard);
  assert.is(res.fromBalance, before[0] - 250n);
  assert.is(res.toBalance, before[1] + 250n);
  assert.match(res.transactionId, /^sr_[a-z0-9]+_/);
  assert.is(await balance(crossA), before[0] - 250n);
  assert.is(await balance(crossB), before[1] + 250n);
  assert.is(await preparedEverywhere(), 0);
  const home = crossA < crossB ? res.fromShard : res.toShard;
  assert.equal(await decisionOf(res.transactionId), { shard: home, decision: "commit" }, "decided by the home shard's own commit");
  assert.is(await total(), 1_000_000n);
});

test("a retry with the same request_id returns the first outcome and moves nothing twice", async () => {
  const { crossA, crossB } = await keys();
  const requestId = randomUUID();
  const first = await t.connect.transfer({ fromKey: crossA, toKey: crossB, amount: 7n, requestId });
  const again = await t.grpc.transfer({ fromKey: crossA, toKey: crossB, amount: 7n, requestId });
  assert.is(first.replayed, false);
  assert.is(again.replayed, true);
  assert.is(again.transactionId, first.transactionId);
  assert.is(again.fromBalance, first.fromBalance);
  assert.is(await balance(crossA), first.fromBalance);
  const reused = await failure(t.connect.transfer({ fromKey: crossA, toKey: crossB, amount: 8n, requestId }));
  assert.is(reused.code, Code.FailedPrecondition);
  assert.match(reused.rawMessage, "already used for a different request");
  assert.is(await balance(crossA), first.fromBalance);
});

test("bad transfers fail with the right code and change no balance", async () => {
  const { crossA, crossB } = await keys();
  const before = [await balance(crossA), await balance(crossB), await total()];
  const cases: [object, Code, string][] = [
    [{ fromKey: crossA, toKey: crossB, amount: 0n }, Code.InvalidArgument, "amount must be positive"],
    [{ fromKey: crossA, toKey: crossB, amount: -5n }, Code.InvalidArgument, "amount must be positive"],
    [{ fromKey: crossA, toKey: crossA, amount: 5n }, Code.InvalidArgument, "must differ"],
    [{ fromKey: "", toKey: crossB, amount: 5n }, Code.InvalidArgument, "from_key"],
    [{ fromKey: crossA, toKey: crossB, amount: 5n, requestId: "" }, Code.InvalidArgument, "request_id"],
    [{ fromKey: crossA, toKey: "nobody", amount: 5n }, Code.NotFound, "'nobody' does not exist"],
    [{ fromKey: "nobody", toKey: crossB, amount: 5n }, Code.NotFound, "'nobody' does not exist"],
    [{ fromKey: crossA, toKey: crossB, amount: 1_000_000n }, Code.FailedPrecondition, "insufficient funds"],
  ];
  for (const [req, code, message] of cases) {
    const err = await failure(t.connect.transfer({ requestId: randomUUID(), ...req }));
    assert.is(err.code, code, `${JSON.stringify(req, (_, v) => (typeof v === "bigint" ? String(v) : v))}: ${err.message}`);
    assert.match(err.rawMessage, message);
  }
  assert.equal([await balance(crossA), await balance(crossB), await total()], before);
  assert.is(await preparedEverywhere(), 0);
});

test("ExecuteTransaction: all statements commit across shards, or none do", async () => {
  const { crossA, crossB } = await keys();
  const ok = await t.connect.executeTransaction({
    requestId: randomUUID(),
    statements: [
      { key: crossA, sql: "insert into accounts (id, balance) values ($1, $2)", params: [str(`${crossA}-x`), int(5n)] },
      { key: crossB, sql: "update accounts set balance = balance + 1 where id = $1 returning balance", params: [str(crossB)] },
    ],
  });
  assert.is(ok.twoPhase, true);
  assert.is((await decisionOf(ok.transactionId))?.decision, "commit", "the home shard recorded its commit decision");
  assert.is(ok.results.length, 2);
  assert.is(ok.results[1].result?.rows.length, 1);

  const before = await balance(crossB);
  const failed = await failure(t.connect.executeTransaction({
    requestId: randomUUID(),
    statements: [
      { key: crossB, sql: "update accounts set balance = balance + 1000 where id = $1", params: [str(crossB)] },
      { key: crossA, sql: "insert into accounts (id, balance) values ($1, 1)", params: [str(crossA)] }, // duplicate key
    ],
  }));
  assert.is(failed.code, Code.AlreadyExists);
  assert.is(await balance(crossB), before, "the first statement's shard rolled back too");
  assert.is(await preparedEverywhere(), 0);

  const guard = await failure(t.connect.executeTransaction({ requestId: randomUUID(), statements: [{ key: crossA, sql: "commit" }] }));
  assert.is(guard.code, Code.InvalidArgument);
  assert.match(guard.rawMessage, "statements[0]");
  const empty = await failure(t.connect.executeTransaction({ requestId: randomUUID(), statements: [] }));
  assert.is(empty.code, Code.InvalidArgument);
});

test("opposite cross-shard transfers at once never hang; each one commits or fails cleanly", async () => {
  const { crossA, crossB } = await keys();
  const before = await total();
  const outcomes = await Promise.all(Array.from({ length: 40 }, (_, i) => {
    const [from, to] = i % 2 ? [crossA, crossB] : [crossB, crossA];
    return t.connect.transfer({ fromKey: from, toKey: to, amount: 1n, requestId: randomUUID() }, { timeoutMs: 20_000 })
      .then(() => "ok", (err) => ConnectError.from(err).code);
  }));
  const unexpected = outcomes.filter((o) => o !== "ok" && o !== Code.Aborted);
  assert.equal(unexpected, [], `only commits or ABORTED (lock timeout): ${outcomes}`);
  assert.ok(outcomes.filter((o) => o === "ok").length > 0);
  assert.is(await total(), before);
  assert.is(await preparedEverywhere(), 0);
});

test("recovery settles in-doubt transactions: commit where decided, presumed abort where not", async () => {
  const { crossA } = await keys();
  const ownerA = (await t.connect.route({ key: crossA })).shard;
  const owner = t.cluster.shards.find((s) => s.name === ownerA)!.nodes[0];
  const direct = t.direct(owner);
  // A dead router's transactions are prepared by the router's role: only that role (or a superuser)
  // may finish a prepared transaction, and recovery runs as the router.
  const deadRouter = t.asRouter(owner);
  const before = await balance(crossA);
  // Two transactions left prepared by a "dead router": one with a commit decision, one without.
  // (The decision goes in first: with a short grace period recovery would otherwise presume abort.)
  await t.direct(t.cluster.catalog)`insert into shardrouter.decisions (gid, decision, participants, router) values ('sr_deadbeef_1', 'commit', ${[ownerA]}, 'deadbeef')`;
  for (const [gid, delta] of [["sr_deadbeef_1", 11], ["sr_deadbeef_2", 13]] as const) {
    await deadRouter.begin(async (tx) => {
      await tx`update accounts set balance = balance + ${delta} where id = ${crossA}`;
      await tx.prepare(gid);
    });
  }
  // Not ours (another prefix): recovery must leave it alone.
  await direct.begin(async (tx) => { await tx`select 1`; await tx.prepare("other_app_1"); });

  await waitFor("recovery to settle sr_deadbeef_*", async () => {
    const [{ c }] = await direct`select count(*)::int as c from pg_prepared_xacts where gid like 'sr\\_deadbeef%'`;
    return c === 0 ? true : undefined;
  });
  assert.is(await balance(crossA), before + 11n, "the decided commit was applied, the undecided one rolled back");
  const [{ decision }] = await t.direct(t.cluster.catalog)`select decision from shardrouter.decisions where gid = 'sr_deadbeef_2'`;
  assert.is(decision, "abort");
  const [{ other }] = await direct`select count(*)::int as other from pg_prepared_xacts where gid = 'other_app_1'`;
  assert.is(other, 1);
  await direct`rollback prepared 'other_app_1'`;
});

test.run();
