// Deadlines and retries, as a caller lives them: a deadline on ExecuteOnAll or on a transaction
// leaves nothing running or half-done; a replay returns the first answer; a retry while the first
// attempt is in doubt gets ABORTED until recovery settles it; two routers given the same request at
// once apply it once. Everything is checked on the shards themselves.
import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { ROUTER_ROLE } from "../../server/dev-cluster/router-role.js";
import { failure } from "../harness/failure.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { startRouterProcess } from "../harness/router-process.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
const transactions = { lockTimeoutMs: 300, recoveryIntervalMs: 600_000, inDoubtGraceMs: 600_000 };
const str = (value: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value } });

test.before(hook(async () => {
  t = await startTestRouter({ shards: 2, transactions });
  await seedDemoAccounts(t.router.planner);
  await t.grpc.executeOnAll({ sql: "create table counters (id text primary key, n int not null)" });
}));
test.after(hook(async () => { await t?.stop(); }));

const primaryOf = async (key: string) => {
  const { shard } = await t.router.planner.route(key);
  return t.direct(t.cluster.shards.find((s) => s.name === shard.name)!.nodes[0]);
};
/** Two account keys on different shards, not used by another test. */
async function crossShardPair(start: number): Promise<[string, string]> {
  const from = `acct-${start}`;
  for (let k = start + 1; ; k++) {
    if ((await t.router.planner.route(`acct-${k}`)).shard.name !== (await t.router.planner.route(from)).shard.name) return [from, `acct-${k}`];
  }
}
async function balance(key: string): Promise<bigint> {
  const [{ b }] = await (await primaryOf(key))<{ b: string }[]>`select balance::text as b from accounts where id = ${key}`;
  return BigInt(b);
}
async function nothingPrepared(): Promise<true | undefined> {
  for (const shard of t.cluster.shards) {
    const [{ c }] = await t.direct(shard.nodes[0])<{ c: number }[]>`select count(*)::int as c from pg_prepared_xacts`;
    if (c > 0) return undefined;
  }
  return true;
}

test("a deadline on ExecuteOnAll cancels the statement on every shard", async () => {
  const err = await failure(t.grpc.executeOnAll({ sql: "select pg_sleep(30), 'all-deadline-probe'" }, { timeoutMs: 300 }));
  assert.is(err.code, Code.DeadlineExceeded);
  for (const shard of t.cluster.shards) {
    await waitFor(`the statement to be cancelled on ${shard.name}`, async () => {
      const rows = await t.direct(shard.nodes[0])`select 1 from pg_stat_activity where state = 'active' and query like '%all-deadline-probe%' and pid <> pg_backend_pid()`;
      return rows.length === 0 ? true : undefined;
    });
  }
});

test("a deadline on a transaction rolls it back everywhere; a retry with the same request_id then runs it", async () => {
  const [a, b] = await crossShardPair(10);
  const holder = await (await primaryOf(b)).reserve();
  await holder`select pg_advisory_lock(77)`;
  const request = {
    requestId: randomUUID(),
    statements: [
      { key: a, sql: "insert into counters (id, n) values ($1, 1) on conflict (id) do update set n = counters.n + 1", params: [str(a)] },
      { key: b, sql: "select pg_advisory_xact_lock_shared(77)" }, // waits for the test's lock
    ],
  };
  try {
    const err = await failure(t.grpc.executeTransaction(request, { timeoutMs: 200 }));
    assert.is(err.code, Code.DeadlineExceeded, err.message);
    assert.is((await (await primaryOf(a))`select 1 from counters where id = ${a}`).length, 0, "nothing written");
    assert.ok(await nothingPrepared(), "nothing prepared");
  } finally {
    await holder`select pg_advisory_unlock(77)`;
    holder.release();
  }
  const retry = await t.grpc.executeTransaction(request);
  assert.is(retry.replayed, false, "the first attempt left no record: the retry runs");
  assert.ok(retry.twoPhase);
  const [{ n }] = await (await primaryOf(a))<{ n: number }[]>`select n from counters where id = ${a}`;
  assert.is(n, 1, "applied once");
});

test("a replayed ExecuteTransaction returns the first answer and applies nothing again", async () => {
  const key = "acct-30";
  const request = {
    requestId: randomUUID(),
    statements: [{ key, sql: "insert into counters (id, n) values ($1, 1) on conflict (id) do update set n = counters.n + 1 returning n", params: [str(key)] }],
  };
  const first = await t.grpc.executeTransaction(request);
  const again = await t.grpc.executeTransaction(request);
  assert.is(first.replayed, false);
  assert.is(again.replayed, true);
  assert.is(again.transactionId, first.transactionId);
  assert.equal(again.results.map((r) => r.result?.rows.length), first.results.map((r) => r.result?.rows.length));
  const [{ n }] = await (await primaryOf(key))<{ n: number }[]>`select n from counters where id = ${key}`;
  assert.is(n, 1, "applied once, whatever the replay said");
  const other = await failure(t.grpc.executeTransaction({ ...request, statements: [{ ...request.statements[0], sql: "select 1" }] }));
  assert.is(other.code, Code.FailedPrecondition, "the same id with another request is refused");
});

test("a retry while the first attempt is in doubt gets ABORTED; after recovery it gets the one outcome", async () => {
  const [from, to] = await crossShardPair(40);
  const before = [await balance(from), await balance(to)];
  const requestId = randomUUID();
  const doomed = await startRouterProcess(t.cluster, { failpoints: "after_prepare", transactions });
  await failure(doomed.client.transfer({ fromKey: from, toKey: to, amount: 10n, requestId }));
  assert.is(await doomed.exited, "SIGKILL");
  assert.ok(!(await nothingPrepared()), "the crash left the transaction prepared (in doubt)");

  const inDoubt = await failure(t.grpc.transfer({ fromKey: from, toKey: to, amount: 10n, requestId }));
  assert.is(inDoubt.code, Code.Aborted, inDoubt.message);
  // The home shard's transaction died with the router (only the others were prepared), so the retry
  // waits on the prepared shard's row locks instead of on the request record.
  assert.match(inDoubt.rawMessage, /still being applied|lock timeout/);
  assert.equal([await balance(from), await balance(to)], before, "nothing moved while in doubt");

  // A router whose recovery may settle it (no commit decision was recorded: presumed abort).
  const recovering = await startRouterProcess(t.cluster, { transactions: { ...transactions, inDoubtGraceMs: 200, recoveryIntervalMs: 100 } });
  try {
    await waitFor("recovery to settle the in-doubt transaction", nothingPrepared, 20_000);
  } finally {
    await recovering.kill("SIGINT");
  }
  const retry = await t.grpc.transfer({ fromKey: from, toKey: to, amount: 10n, requestId });
  assert.is(retry.replayed, false, "rolled back by recovery, so the retry runs");
  assert.equal([await balance(from), await balance(to)], [before[0] - 10n, before[1] + 10n], "moved exactly once");
});

test("a late duplicate that another shard now refuses is a replay, or unavailable while its record cannot be read", async () => {
  // From a key on the shard that goes first (by name) to a lesser key: the debit runs before the home
  // shard (the lesser key's) reads the request record.
  const names = t.cluster.shards.map((s) => s.name).sort();
  let pair: [string, string] | undefined;
  for (let a = 100; !pair; a++) {
    for (let b = 100; b < a; b++) {
      const [sa, sb] = [(await t.router.planner.route(`acct-${a}`)).shard.name, (await t.router.planner.route(`acct-${b}`)).shard.name];
      if (sa === names[0] && sb === names[1] && `acct-${b}` < `acct-${a}`) { pair = [`acct-${a}`, `acct-${b}`]; break; }
    }
  }
  const [from, to] = pair;
  const request = { fromKey: from, toKey: to, amount: 5n, requestId: randomUUID() };
  const first = await t.grpc.transfer(request);
  await (await primaryOf(from))`update accounts set balance = 0 where id = ${from}`; // the debit would now fail
  // The home shard answers, but cannot show the record (as when it fails right then).
  const home = t.direct(t.cluster.shards.find((s) => s.name === names[1])!.nodes[0]);
  await home.unsafe(`revoke select on shardrouter.requests from ${ROUTER_ROLE}`);
  try {
    const unknown = await failure(t.grpc.transfer(request));
    assert.is(unknown.code, Code.Unavailable, `${Code[unknown.code]}: ${unknown.rawMessage}`);
    assert.match(unknown.rawMessage, "retry with the same request_id");
  } finally {
    await home.unsafe(`grant select on shardrouter.requests to ${ROUTER_ROLE}`);
  }
  const again = await t.grpc.transfer(request);
  assert.is(again.replayed, true, "a replay, not insufficient funds");
  assert.is(again.transactionId, first.transactionId);
});

test("two routers given the same requests at once apply each exactly once", async () => {
  const other = await startRouterProcess(t.cluster, { transactions });
  try {
    const [from, to] = await crossShardPair(60);
    const before = [await balance(from), await balance(to)];
    const rounds = 8;
    const definite = async (call: () => Promise<{ transactionId: string; replayed: boolean }>) => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await call();
        } catch (err) {
          const e = ConnectError.from(err);
          if (e.code !== Code.Aborted || attempt >= 50) throw e; // "still being applied" by the other router
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    };
    for (let i = 0; i < rounds; i++) {
      const req = { fromKey: from, toKey: to, amount: 1n, requestId: randomUUID() };
      const [x, y] = await Promise.all([definite(() => t.grpc.transfer(req)), definite(() => other.client.transfer(req))]);
      assert.is(x.transactionId, y.transactionId, "both routers report the same transaction");
      assert.is([x, y].filter((r) => !r.replayed).length, 1, "exactly one ran it; the other replayed it");
    }
    assert.equal([await balance(from), await balance(to)], [before[0] - BigInt(rounds), before[1] + BigInt(rounds)], "each applied once");
  } finally {
    await other.kill("SIGINT");
  }
});

test("a request log of the first layout (keyed by request_id alone) is upgraded in place; a request recorded before is still a replay", async () => {
  const [from, to] = await crossShardPair(300);
  const req = { fromKey: from, toKey: to, amount: 5n, requestId: `old-layout-${randomUUID()}` };
  const first = await t.grpc.transfer(req);
  const home = await primaryOf(from < to ? from : to);
  // The table as routers before the home key made it, with the record in it.
  await home.unsafe(`alter table shardrouter.requests drop constraint requests_pkey;
                     alter table shardrouter.requests drop column home_key;
                     alter table shardrouter.requests add primary key (request_id)`);
  const before = [await balance(from), await balance(to)];
  const again = await t.grpc.transfer(req);
  assert.ok(again.replayed, "the retry is a replay");
  assert.is(again.transactionId, first.transactionId);
  assert.equal([await balance(from), await balance(to)], before, "nothing moved twice");
  const [{ key }] = await home<{ key: string }[]>`select string_agg(a.attname, ',' order by a.attname) as key from pg_index i
    join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey) where i.indrelid = 'shardrouter.requests'::regclass and i.indisprimary`;
  assert.is(key, "home_key,request_id", "upgraded: records are kept under their home key");
  const next = await t.grpc.transfer({ ...req, requestId: `after-upgrade-${randomUUID()}` });
  assert.not.ok(next.replayed);
});

test.run();
