// Execute's writes on several shards are atomic, checked on the shards themselves: a write to a
// reference table when the router is SIGKILLed at each step of two-phase commit (recovery settles it
// the same way on every shard, and a retry with the same request_id applies it at most once); a
// multi-row INSERT whose rows land on several shards, one row failing; an UPDATE over every shard
// (allow_scatter_write), one shard failing.
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import { PostgresErrorDetailSchema } from "../../gen/shardrouter/v1/errors_pb.js";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { devConfig } from "../../server/dev-cluster/dev-config.js";
import type { LocalShard } from "../../server/dev-cluster/local-cluster.js";
import { failure } from "../harness/failure.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { type RouterProcess, startRouterProcess } from "../harness/router-process.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
const tables = { sharded: { accounts: "id" }, reference: ["currencies"] };
const transactions = { inDoubtGraceMs: 300, recoveryIntervalMs: 100, lockTimeoutMs: 300 };
const str = (value: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value } });
const int = (value: bigint): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "int64Value", value } });

const shardNamed = (name: string): LocalShard => t.cluster.shards.find((s) => s.name === name)!;
const ownerOf = async (key: string) => (await t.connect.route({ key })).shard;

async function currencies(shard: LocalShard): Promise<string> {
  const rows = await t.direct(shard.nodes[0])<{ code: string; name: string }[]>`select code, name from currencies order by code`;
  return JSON.stringify(rows.map((r) => [r.code, r.name]));
}

async function noPreparedTransactions(): Promise<true | undefined> {
  for (const shard of t.cluster.shards) {
    const [{ c }] = await t.direct(shard.nodes[0])<{ c: number }[]>`select count(*)::int as c from pg_prepared_xacts`;
    if (c > 0) return undefined;
  }
  return true;
}

/** Where each of `keys` is stored, read from every shard (a key found on two shards is listed twice). */
async function whereStored(keys: string[]): Promise<Map<string, string[]>> {
  const found = new Map<string, string[]>(keys.map((k) => [k, []]));
  for (const shard of t.cluster.shards) {
    const rows = await t.direct(shard.nodes[0])<{ id: string }[]>`select id from accounts where id = any(${keys})`;
    for (const r of rows) found.get(r.id)!.push(shard.name);
  }
  return found;
}

/** Balances of the accounts whose id starts with `prefix`, per shard: what a scatter write may change. */
async function balancesByShard(prefix: string): Promise<string> {
  const out: Record<string, [string, string][]> = {};
  for (const shard of t.cluster.shards) {
    const rows = await t.direct(shard.nodes[0])<{ id: string; b: string }[]>`select id, balance::text as b from accounts where id like ${`${prefix}%`} order by id`;
    out[shard.name] = rows.map((r) => [r.id, r.b]);
  }
  return JSON.stringify(out);
}

test.before(hook(async () => {
  // The in-process router only seeds and checks; its recovery is slow so the restarted router process
  // is the one that settles what its crashed predecessor left.
  t = await startTestRouter({ shards: 4, tables, transactions: { ...transactions, recoveryIntervalMs: 600_000, inDoubtGraceMs: 600_000 } });
  await seedDemoAccounts(t.router.planner);
  for (const shard of t.cluster.shards) {
    await t.direct(shard.nodes[0])`create table currencies (code text primary key, name text not null)`;
  }
}));
test.after(hook(async () => { await t?.stop(); }));

// ---- a crash at each two-phase failpoint --------------------------------------------------------

/** How the doomed router ended; a router still serving after a call that failed some other way fails the test, not hangs it. */
async function ended(doomed: RouterProcess, failed: Error): Promise<string> {
  try {
    return await waitFor("the router to crash at its failpoint", () => (doomed.process.exitCode === null && doomed.process.signalCode === null ? undefined : doomed.exited), 15_000);
  } catch (err) {
    await doomed.kill();
    throw new Error(`${(err as Error).message}; the call failed with: ${failed.message}\n${doomed.output()}`);
  }
}

const failpoints = [
  { failpoint: "before_prepare", committed: false },
  { failpoint: "after_prepare", committed: false },
  { failpoint: "after_decision", committed: true },
  { failpoint: "after_first_commit", committed: true },
];

/**
 * The statement sent to the doomed router, and what the currencies row it writes must read on every
 * shard: before (not applied) and after (applied once). The UPDATE is not idempotent (it appends),
 * so applying it twice would show.
 */
const writes = [
  {
    kind: "INSERT",
    setup: async (_code: string) => {},
    sql: "insert into currencies (code, name) values ($1, $2)",
    params: (code: string) => [str(code), str(`currency ${code}`)],
    before: (_code: string) => [] as string[][],
    after: (code: string) => [[code, `currency ${code}`]],
  },
  {
    kind: "UPDATE",
    setup: async (code: string) => {
      for (const shard of t.cluster.shards) await t.direct(shard.nodes[0])`insert into currencies (code, name) values (${code}, 'start')`;
    },
    sql: "update currencies set name = name || $1 where code = $2",
    params: (code: string) => [str("+"), str(code)],
    before: (code: string) => [[code, "start"]],
    after: (code: string) => [[code, "start+"]],
  },
];

// Each failpoint once, INSERT and UPDATE in turn (both commit and roll back each): a router process per
// crash and per restart is what this file's time goes to.
for (const [i, { failpoint, committed }] of failpoints.entries()) {
  const write = writes[i % writes.length]!;
  test(`a reference-table ${write.kind} and a crash at ${failpoint}: ${committed ? "committed" : "rolled back"} on every shard, a retry applies it once`, async () => {
    const code = `${write.kind[0]}${i}`;
    await write.setup(code);
    const requestId = randomUUID();
    const config = devConfig(t.cluster, { port: 0, transactions, tables }) as Record<string, unknown>;
    const request = { sql: write.sql, params: write.params(code), requestId };
    const rowOn = async (shard: LocalShard) => {
      const rows = await t.direct(shard.nodes[0])<{ code: string; name: string }[]>`select code, name from currencies where code = ${code}`;
      return rows.map((r) => [r.code, r.name]);
    };

    const doomed = await startRouterProcess(t.cluster, { config, failpoints: failpoint });
    const failed = await doomed.client.execute(request).then(() => undefined, (e: Error) => e);
    assert.ok(failed, "the client saw the crash as an error");
    assert.is(await ended(doomed, failed), "SIGKILL");
    assert.match(doomed.output(), `failpoint ${failpoint}@1`, "the crash came from the failpoint, inside two-phase commit");

    const restarted = await startRouterProcess(t.cluster, { config });
    try {
      await waitFor("recovery to leave no prepared transaction", noPreparedTransactions, 20_000);
      const contents = await Promise.all(t.cluster.shards.map(currencies));
      assert.equal(new Set(contents).size, 1, `every shard holds the same currencies:\n${contents.join("\n")}`);
      for (const shard of t.cluster.shards) {
        assert.equal(await rowOn(shard), committed ? write.after(code) : write.before(code), `${shard.name} after recovery`);
      }

      const retry = await restarted.client.execute(request);
      assert.is(retry.replayed, committed, "a committed write is replayed; a rolled-back one runs now");
      assert.ok(retry.twoPhase, "a reference-table write commits on every shard with two-phase commit");
      assert.equal(retry.shards, t.cluster.shards.map((s) => s.name));
      await waitFor("the retry's commit to reach every shard", noPreparedTransactions, 20_000);
      for (const shard of t.cluster.shards) assert.equal(await rowOn(shard), write.after(code), `${shard.name}: applied exactly once`);
    } finally {
      await restarted.kill("SIGINT");
    }
  });
}

// ---- a multi-row INSERT over several shards -----------------------------------------------------

/** New account ids on at least two shards below `last` (shard name order), none on `last`. */
async function keysBelow(prefix: string, last: string): Promise<string[]> {
  const keys: string[] = [];
  const shards = new Set<string>();
  for (let i = 0; shards.size < 2 || keys.length < 4; i++) {
    const key = `${prefix}-${i}`;
    const owner = await ownerOf(key);
    if (owner === last) continue;
    keys.push(key);
    shards.add(owner);
  }
  return keys;
}

/** A key owned by `shard` that starts with `prefix`. */
async function keyOn(shard: string, prefix: string): Promise<string> {
  for (let i = 0; ; i++) if ((await ownerOf(`${prefix}-${i}`)) === shard) return `${prefix}-${i}`;
}

const values = (n: number) => Array.from({ length: n }, (_, i) => `($${2 * i + 1}, $${2 * i + 2})`).join(", ");

// The failing row is on the last shard in name order, the one a transaction reaches last: the rows
// before it have been written on their shards when it fails, and must be rolled back there.
const lastShard = () => [...t.cluster.shards.map((s) => s.name)].sort().at(-1)!;

test("a multi-row INSERT with a duplicate key on one shard fails as that shard's 23505 and leaves no row anywhere", async () => {
  const keys = await keysBelow("dup", lastShard());
  const existing = await keyOn(lastShard(), "acct"); // a demo account: its primary key is taken
  const rows = [...keys.map((k) => [k, 5n] as const), [existing, 5n] as const];
  const [{ b: before }] = await t.direct(shardNamed(lastShard()).nodes[0])<{ b: string }[]>`select balance::text as b from accounts where id = ${existing}`;

  const err = await failure(t.connect.execute({ sql: `insert into accounts (id, balance) values ${values(rows.length)}`, params: rows.flatMap(([k, b]) => [str(k), int(b)]) }));
  assert.is(err.code, Code.AlreadyExists, err.rawMessage);
  const detail = err.findDetails(PostgresErrorDetailSchema)[0];
  assert.is(detail?.sqlstate, "23505");
  assert.is(detail?.shard, lastShard());
  assert.equal([...(await whereStored(keys)).values()].flat(), [], "no new row on any shard");
  const [{ b: after }] = await t.direct(shardNamed(lastShard()).nodes[0])<{ b: string }[]>`select balance::text as b from accounts where id = ${existing}`;
  assert.is(after, before, "the existing row is untouched");
  assert.ok(await noPreparedTransactions(), "nothing is left prepared");
});

test("a multi-row INSERT with a CHECK violated on one shard fails as 23514 and leaves no row anywhere", async () => {
  const keys = await keysBelow("check", lastShard());
  const negative = await keyOn(lastShard(), "check-negative");
  const rows = [...keys.map((k) => [k, 5n] as const), [negative, -1n] as const];

  const err = await failure(t.connect.execute({ sql: `insert into accounts (id, balance) values ${values(rows.length)}`, params: rows.flatMap(([k, b]) => [str(k), int(b)]) }));
  assert.is(err.code, Code.FailedPrecondition, err.rawMessage);
  assert.is(err.findDetails(PostgresErrorDetailSchema)[0]?.sqlstate, "23514");
  assert.equal([...(await whereStored([...keys, negative])).values()].flat(), [], "no row on any shard");
});

test("a multi-row INSERT without a violation stores every row on its owner's shard only, atomically", async () => {
  const keys = [...(await keysBelow("many", lastShard())), await keyOn(lastShard(), "many-last")];
  const owners = await Promise.all(keys.map(ownerOf));

  const r = await t.connect.execute({ sql: `insert into accounts (id, balance) values ${values(keys.length)}`, params: keys.flatMap((k) => [str(k), int(7n)]) });
  assert.is(r.result?.rowsAffected, BigInt(keys.length));
  assert.equal(new Set(r.shards), new Set(owners), "the shards that ran it are the owners");
  assert.ok(r.twoPhase, "rows on several shards commit with two-phase commit");
  const stored = await whereStored(keys);
  keys.forEach((k, i) => assert.equal(stored.get(k), [owners[i]], `${k} is on its owner only`));
});

// ---- UPDATE with no key: refused, or every shard atomically -------------------------------------

test("an UPDATE that pins no key is refused without allow_scatter_write, and runs nowhere", async () => {
  const keys = [...(await keysBelow("refused", lastShard())), await keyOn(lastShard(), "refused-last")];
  await t.connect.execute({ sql: `insert into accounts (id, balance) values ${values(keys.length)}`, params: keys.flatMap((k) => [str(k), int(10n)]) });
  const before = await balancesByShard("refused-");

  const err = await failure(t.connect.execute({ sql: "update accounts set balance = balance + 1 where id like $1", params: [str("refused-%")] }));
  assert.is(err.code, Code.InvalidArgument, err.rawMessage);
  assert.match(err.rawMessage, "allow_scatter_write", "the message says how to mean it");
  assert.is(await balancesByShard("refused-"), before, "nothing changed");
});

test("allow_scatter_write: an UPDATE over every shard commits on all of them, or (one shard failing) on none", async () => {
  // Accounts on every shard, one of them (on the last shard) with a balance of 0: subtracting 1
  // violates the CHECK only there.
  const keys = [...(await keysBelow("scatter", lastShard())), await keyOn(lastShard(), "scatter-last")];
  const poor = await keyOn(lastShard(), "scatter-poor");
  await t.connect.execute({ sql: `insert into accounts (id, balance) values ${values(keys.length)}`, params: keys.flatMap((k) => [str(k), int(10n)]) });
  await t.connect.execute({ sql: "insert into accounts (id, balance) values ($1, 0)", params: [str(poor)] });
  const before = await balancesByShard("scatter-");

  const err = await failure(t.connect.execute({ sql: "update accounts set balance = balance - 1 where id like $1", params: [str("scatter-%")], allowScatterWrite: true }));
  assert.is(err.code, Code.FailedPrecondition, err.rawMessage);
  assert.is(err.findDetails(PostgresErrorDetailSchema)[0]?.sqlstate, "23514");
  assert.is(await balancesByShard("scatter-"), before, "no shard changed");
  assert.ok(await noPreparedTransactions(), "nothing is left prepared");

  await t.connect.execute({ sql: "delete from accounts where id = $1", params: [str(poor)] });
  const r = await t.connect.execute({ sql: "update accounts set balance = balance - 1 where id like $1", params: [str("scatter-%")], allowScatterWrite: true });
  assert.equal(r.shards, t.cluster.shards.map((s) => s.name), "every shard ran it");
  assert.ok(r.twoPhase);
  assert.is(r.result?.rowsAffected, BigInt(keys.length));
  const owners = await Promise.all(keys.map(ownerOf));
  const expected: Record<string, [string, string][]> = Object.fromEntries(t.cluster.shards.map((s) => [s.name, []]));
  keys.forEach((k, i) => expected[owners[i]].push([k, "9"]));
  for (const list of Object.values(expected)) list.sort((a, b) => (a[0] < b[0] ? -1 : 1));
  assert.is(await balancesByShard("scatter-"), JSON.stringify(expected), "every row on every shard updated once");
});

test.run();
