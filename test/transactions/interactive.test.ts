// Interactive transactions (issue 14): BeginTransaction … ExecuteInTransaction … CommitTransaction or
// RollbackTransaction on one shard, through the generated Connect client, under auth (each identity's
// own login), against real PostgreSQL. Every wait is on a condition (pg_stat_activity, a lock, a
// metric), never a sleep.
import { Code, type Client } from "@connectrpc/connect";
import type postgres from "postgres";
import * as assert from "uvu/assert";
import { PostgresErrorDetailSchema } from "../../gen/shardrouter/v1/errors_pb.js";
import { RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import { IsolationLevel, TransactionOutcome } from "../../gen/shardrouter/v1/transactions_pb.js";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import { Catalog } from "../../server/catalog/catalog.js";
import { FenceStore } from "../../server/catalog/fence-store.js";
import { buildShardMap } from "../../server/placement/shard-map.js";
import { installEpochGuard, setMinimumEpoch } from "../../server/resharding/epoch-guard.js";
import type { TableShape } from "../../server/resharding/table-schema.js";
import { apiKey, assertCode, clientFor, ensureRole } from "../auth/fixtures.js";
import { plainRows } from "../e2e/values.js";
import { scrape } from "../observability/scrape.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

const appKey = apiKey("app");
const otherKey = apiKey("other");
const readerKey = apiKey("reader");
const appPassword = "app-Pa55-5521";
const key = "k1";
const lines: string[] = [];
let t: TestRouter;
let app: Client<typeof RouterService>;
let other: Client<typeof RouterService>;
let admin: postgres.Sql; // the key's shard primary, as the superuser
let shard: string;
const str = (value: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value } });
const int = (value: bigint): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "int64Value", value } });

test.before(hook(async () => {
  t = await startTestRouter({
    shards: 2,
    pool: { max: 4 },
    transactions: { interactive: { maxPerNode: 3 } }, // the fence test holds three sessions on one node
    log: (line) => lines.push(line),
    logLevel: "debug", // every access line, every session's end
    auth: async (cluster) => {
      const postgres = (await import("postgres")).default;
      for (const s of cluster.shards) {
        const n = s.nodes[0];
        const sql = postgres({ host: n.host, port: n.port, database: n.database, user: n.user, password: n.password, max: 1, onnotice: () => {} });
        try {
          await sql`create table if not exists items (id text primary key, n int not null)`;
          await ensureRole(sql, "app_rw", appPassword, "select, insert, update, delete");
        } finally {
          await sql.end({ timeout: 5 });
        }
      }
      return {
        identities: [
          { name: "app", apiKeys: [{ id: "app", sha256: appKey.sha256 }], login: { user: "app_rw", password: appPassword }, rpcs: ["RouterService/*"] },
          { name: "other", apiKeys: [{ id: "other", sha256: otherKey.sha256 }], login: "router", rpcs: ["RouterService/*"] },
          { name: "reader", apiKeys: [{ id: "reader", sha256: readerKey.sha256 }], login: "router", rpcs: ["RouterService/ExecuteOnShard"] },
        ],
      };
    },
  });
  app = clientFor(RouterService, t.router.url, "grpc", { token: appKey.key });
  other = clientFor(RouterService, t.router.url, "connect-binary", { token: otherKey.key });
  shard = (await t.router.planner.route(key)).shard.name;
  admin = t.direct(t.cluster.shards.find((s) => s.name === shard)!.nodes[0]);
}));
test.after(hook(async () => { await t?.stop(); }));

async function value(id: string): Promise<number | undefined> {
  const rows = await admin<{ n: number }[]>`select n from items where id = ${id}`;
  return rows[0]?.n;
}

async function put(id: string, n: number): Promise<void> {
  await admin`insert into items values (${id}, ${n}) on conflict (id) do update set n = excluded.n`;
}

function cells(res: { result?: Parameters<typeof plainRows>[0] }): unknown[][] {
  return plainRows(res.result!);
}

/** The router's backends on the shard that are idle inside a transaction. */
async function idleInTransaction(): Promise<number> {
  const [{ n }] = await admin<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where application_name = 'shardrouter' and state like 'idle in transaction%'`;
  return n;
}

async function openGauge(): Promise<number> {
  return (await scrape(t.router.url)).value("shardrouter_interactive_transactions_open");
}

async function ended(reason: string): Promise<number> {
  return (await scrape(t.router.url)).value("shardrouter_interactive_transactions_ended_total", { reason });
}

/** Until nothing of the router's is left open on the shard: no session counted, no backend idle in a transaction. */
async function allReleased(what: string): Promise<void> {
  await waitFor(`${what}: every interactive transaction released`, async () => ((await openGauge()) === 0 && (await idleInTransaction()) === 0 ? true : undefined));
  const node = t.router.planner.shards.shard(shard).nodes[0];
  assert.is(node.admission.inUse, 0, `${what}: no admission slot held on ${node.name}`);
}

/** Takes the row's lock as another writer would; resolves once it got it (the session let go). */
async function writeAsAnother(id: string, n: number): Promise<void> {
  await admin.begin(async (tx) => {
    await tx`set local lock_timeout = '10s'`;
    await tx`update items set n = ${n} where id = ${id}`;
  });
}

test("commit makes writes visible, reads inside see them; rollback discards; both end the token", async () => {
  await admin`delete from items where id in ('a', 'b')`;
  const begun = await app.beginTransaction({ key });
  assert.match(begun.transactionToken, new RegExp(`^${t.router.routerId}\\.[A-Za-z0-9_-]{22}$`));
  assert.is(begun.shard, shard);
  assert.is(begun.idleTimeoutMs, 10_000, "the configured default");
  const token = begun.transactionToken;
  const who = await app.executeInTransaction({ transactionToken: token, sql: "select current_user::text, pg_backend_pid()" });
  assert.is(cells(who)[0][0], "app_rw", "the caller's login");
  const inserted = await app.executeInTransaction({ transactionToken: token, sql: "insert into items values ($1, $2)", params: [str("a"), int(1n)] });
  assert.is(inserted.result!.rowsAffected, 1n);
  assert.is(inserted.shard, shard);
  const read = await app.executeInTransaction({ transactionToken: token, sql: "select n from items where id = $1", params: [str("a")] });
  assert.equal(cells(read), [[1n]], "read your writes");
  assert.is(await value("a"), undefined, "not visible outside before the commit");
  const committed = await app.commitTransaction({ transactionToken: token });
  assert.is(committed.outcome, TransactionOutcome.COMMITTED);
  assert.is(committed.shard, shard);
  assert.is(await value("a"), 1);
  const gone = await assertCode(app.executeInTransaction({ transactionToken: token, sql: "select 1" }), Code.NotFound, "after commit");
  assert.match(gone.rawMessage, "already been committed");
  await assertCode(app.rollbackTransaction({ transactionToken: token }), Code.NotFound, "rollback after commit");

  const second = (await app.beginTransaction({ key })).transactionToken;
  await app.executeInTransaction({ transactionToken: second, sql: "update items set n = 2 where id = 'a'" });
  await app.executeInTransaction({ transactionToken: second, sql: "insert into items values ('b', 1)" });
  const rolledBack = await app.rollbackTransaction({ transactionToken: second });
  assert.ok(rolledBack.wasOpen);
  assert.is(await value("a"), 1);
  assert.is(await value("b"), undefined);
  assert.not.ok((await app.rollbackTransaction({ transactionToken: second })).wasOpen, "rolling back again is no error");
  const after = await assertCode(app.commitTransaction({ transactionToken: second }), Code.NotFound, "commit after rollback");
  assert.match(after.rawMessage, "already been rolled back");
  await allReleased("commit and rollback");
  assert.ok((await ended("commit")) >= 1 && (await ended("rollback")) >= 1, "ended counted by reason");
});

test("isolation levels and READ ONLY are honoured", async () => {
  const levels: [IsolationLevel, string][] = [
    [IsolationLevel.UNSPECIFIED, "read committed"], [IsolationLevel.READ_COMMITTED, "read committed"],
    [IsolationLevel.REPEATABLE_READ, "repeatable read"], [IsolationLevel.SERIALIZABLE, "serializable"],
  ];
  for (const [isolationLevel, expected] of levels) {
    const { transactionToken } = await app.beginTransaction({ key, isolationLevel });
    const res = await app.executeInTransaction({ transactionToken, sql: "select current_setting('transaction_isolation'), current_setting('transaction_read_only')" });
    assert.equal(cells(res), [[expected, "off"]], IsolationLevel[isolationLevel]);
    await app.rollbackTransaction({ transactionToken });
  }

  // Repeatable read: one snapshot for the whole transaction.
  await put("rr", 1);
  const rr = (await app.beginTransaction({ key, isolationLevel: IsolationLevel.REPEATABLE_READ })).transactionToken;
  assert.equal(cells(await app.executeInTransaction({ transactionToken: rr, sql: "select n from items where id = 'rr'" })), [[1n]]);
  await put("rr", 2);
  assert.equal(cells(await app.executeInTransaction({ transactionToken: rr, sql: "select n from items where id = 'rr'" })), [[1n]], "its snapshot");
  await app.commitTransaction({ transactionToken: rr });

  const ro = (await app.beginTransaction({ key, readOnly: true, isolationLevel: IsolationLevel.SERIALIZABLE })).transactionToken;
  assert.equal(cells(await app.executeInTransaction({ transactionToken: ro, sql: "select current_setting('transaction_read_only'), current_setting('transaction_isolation')" })), [["on", "serializable"]]);
  const err = await assertCode(app.executeInTransaction({ transactionToken: ro, sql: "insert into items values ('ro', 1)" }), Code.FailedPrecondition, "a write in a read-only transaction");
  assert.is(err.findDetails(PostgresErrorDetailSchema)[0]?.sqlstate, "25006");
  await app.rollbackTransaction({ transactionToken: ro });
  assert.is(await value("ro"), undefined);
  await allReleased("isolation levels");
});

test("a failed statement aborts the transaction: Commit answers ABORTED and nothing is written; a savepoint recovers", async () => {
  await admin`delete from items where id in ('f', 's1', 's2')`;
  const token = (await app.beginTransaction({ key })).transactionToken;
  await app.executeInTransaction({ transactionToken: token, sql: "insert into items values ('f', 1)" });
  const failed = await assertCode(app.executeInTransaction({ transactionToken: token, sql: "select 1 / 0" }), Code.InvalidArgument, "division by zero");
  assert.is(failed.findDetails(PostgresErrorDetailSchema)[0]?.sqlstate, "22012");
  const ignored = await assertCode(app.executeInTransaction({ transactionToken: token, sql: "select 1" }), Code.FailedPrecondition, "after the failure");
  assert.is(ignored.findDetails(PostgresErrorDetailSchema)[0]?.sqlstate, "25P02", "Postgres ignores statements until the end of the block");
  const aborted = await assertCode(app.commitTransaction({ transactionToken: token }), Code.Aborted, "commit of an aborted transaction");
  assert.match(aborted.rawMessage, "ROLLBACK");
  assert.match(aborted.rawMessage, "SQLSTATE 25P02");
  assert.match(aborted.rawMessage, "nothing of it was committed");
  assert.is(await value("f"), undefined, "nothing written");
  const later = await assertCode(app.commitTransaction({ transactionToken: token }), Code.NotFound, "commit again");
  assert.match(later.rawMessage, "rolled back when it was committed");
  assert.not.ok((await app.rollbackTransaction({ transactionToken: token })).wasOpen, "the caller's cleanup rollback is no error");

  // SAVEPOINT is allowed: a caller recovers from a failed statement without losing the transaction.
  const sp = (await app.beginTransaction({ key })).transactionToken;
  await app.executeInTransaction({ transactionToken: sp, sql: "insert into items values ('s1', 1)" });
  await app.executeInTransaction({ transactionToken: sp, sql: "savepoint before_dup" });
  await assertCode(app.executeInTransaction({ transactionToken: sp, sql: "insert into items values ('s1', 2)" }), Code.AlreadyExists, "duplicate key");
  await app.executeInTransaction({ transactionToken: sp, sql: "rollback to savepoint before_dup" });
  await app.executeInTransaction({ transactionToken: sp, sql: "insert into items values ('s2', 2)" });
  await app.executeInTransaction({ transactionToken: sp, sql: "release savepoint before_dup" });
  assert.is((await app.commitTransaction({ transactionToken: sp })).outcome, TransactionOutcome.COMMITTED);
  assert.is(await value("s1"), 1);
  assert.is(await value("s2"), 2);
  await allReleased("failed statements");
});

test("transaction control and session settings are refused; the transaction goes on unharmed", async () => {
  await admin`delete from items where id = 'tc'`;
  const token = (await app.beginTransaction({ key })).transactionToken;
  await app.executeInTransaction({ transactionToken: token, sql: "insert into items values ('tc', 1)" });
  for (const sql of ["commit", "COMMIT AND CHAIN", "end", "rollback", "abort", "begin", "start transaction isolation level serializable", "prepare transaction 'x1'", "commit prepared 'x1'", "rollback prepared 'x1'"]) {
    const err = await assertCode(app.executeInTransaction({ transactionToken: token, sql }), Code.InvalidArgument, sql);
    assert.match(err.rawMessage, "CommitTransaction or RollbackTransaction", sql);
  }
  for (const sql of ["set search_path = pg_catalog", "set local statement_timeout = 0", "select set_config('app.x', 'y', false)", "listen ch", "select pg_advisory_lock(1)"]) {
    await assertCode(app.executeInTransaction({ transactionToken: token, sql }), Code.InvalidArgument, sql);
  }
  await assertCode(app.executeInTransaction({ transactionToken: token, sql: "select 1; select 2" }), Code.InvalidArgument, "two statements");
  assert.is((await app.commitTransaction({ transactionToken: token })).outcome, TransactionOutcome.COMMITTED, "refusals never reached Postgres");
  assert.is(await value("tc"), 1);
});

test("nothing of a session leaks into a later pooled caller: settings are local; a contained statement closes the connection", async () => {
  // A transaction-local setting dies with the transaction; the clean connection goes back to the pool.
  const token = (await app.beginTransaction({ key })).transactionToken;
  await app.executeInTransaction({ transactionToken: token, sql: "select set_config('app.tenant', 'acme', true)" });
  const [[pid, tenant]] = cells(await app.executeInTransaction({ transactionToken: token, sql: "select pg_backend_pid(), current_setting('app.tenant')" }));
  assert.is(tenant, "acme");
  await app.commitTransaction({ transactionToken: token });
  const [[pooledPid, pooledTenant]] = cells(await app.executeOnShard({ key, sql: "select pg_backend_pid(), coalesce(current_setting('app.tenant', true), '')" }));
  assert.is(pooledPid, pid, "the session's connection went back to the pool (the most recently used is reused first)");
  assert.is(pooledTenant, "", "its setting did not");

  // A DO block (code the guard cannot read) changes the session and takes a session lock: contained.
  const contained = (await app.beginTransaction({ key })).transactionToken;
  const [[doPid]] = cells(await app.executeInTransaction({ transactionToken: contained, sql: "select pg_backend_pid()" }));
  await app.executeInTransaction({
    transactionToken: contained,
    sql: "do $$ begin perform set_config('application_name', 'leak-probe', false); perform pg_advisory_lock(77); end $$",
  });
  assert.is((await app.commitTransaction({ transactionToken: contained })).outcome, TransactionOutcome.COMMITTED);
  await waitFor("the contained session's backend to be gone", async () => {
    const rows = await admin`select 1 from pg_stat_activity where pid = ${Number(doPid)} or application_name = 'leak-probe'`;
    return rows.length === 0 ? true : undefined;
  });
  const [{ locks }] = await admin<{ locks: number }[]>`select count(*)::int as locks from pg_locks where locktype = 'advisory'`;
  assert.is(locks, 0, "its advisory lock died with its connection");
  const [[appName]] = cells(await app.executeOnShard({ key, sql: "select current_setting('application_name')" }));
  assert.is(appName, "shardrouter");
  await allReleased("leak checks");
});

test("idle timeout: the router rolls back, the lock is released, nothing is left idle in a transaction, the token says why", async () => {
  await put("idle", 1);
  const before = await ended("idle_timeout");
  const begun = await app.beginTransaction({ key, idleTimeoutMs: 1000 });
  assert.is(begun.idleTimeoutMs, 1000);
  await app.executeInTransaction({ transactionToken: begun.transactionToken, sql: "update items set n = n + 1 where id = 'idle'" });
  assert.is(await openGauge(), 1);
  // Another writer waits on the row's lock until the router rolls the idle transaction back.
  await writeAsAnother("idle", 50);
  assert.is(await value("idle"), 50, "the session's +1 was rolled back, the other writer's update stands");
  await allReleased("idle timeout");
  assert.is(await ended("idle_timeout"), before + 1);
  const err = await assertCode(app.executeInTransaction({ transactionToken: begun.transactionToken, sql: "select 1" }), Code.NotFound, "after the idle timeout");
  assert.match(err.rawMessage, "rolled back after 1000 ms idle");
  await assertCode(app.commitTransaction({ transactionToken: begun.transactionToken }), Code.NotFound, "commit after the idle timeout");
  // A request cannot ask for more than transactions.interactive.maxIdleTimeoutMs.
  const capped = await app.beginTransaction({ key, idleTimeoutMs: 4_000_000_000 });
  assert.is(capped.idleTimeoutMs, 60_000);
  await app.rollbackTransaction({ transactionToken: capped.transactionToken });
});

test("a lost connection (backend terminated) ends the session: slot and count given back, the token says why", async () => {
  const token = (await app.beginTransaction({ key })).transactionToken;
  const [[pid]] = cells(await app.executeInTransaction({ transactionToken: token, sql: "select pg_backend_pid()" }));
  await admin`select pg_terminate_backend(${Number(pid)})`;
  await allReleased("a terminated backend");
  const err = await assertCode(app.executeInTransaction({ transactionToken: token, sql: "select 1" }), Code.NotFound, "after the loss");
  assert.match(err.rawMessage, "was lost");
  assert.is(t.router.planner.shards.shard(shard).nodes[0].status, "up", "one lost session connection does not mark the node down");
  // The pool is fine: the next transaction gets a working connection.
  const next = (await app.beginTransaction({ key })).transactionToken;
  await app.executeInTransaction({ transactionToken: next, sql: "select 1" });
  await app.commitTransaction({ transactionToken: next });
});

test("a token is bound to its identity: another one gets NOT_FOUND, exactly as for a token that never existed", async () => {
  await put("own", 1);
  const token = (await app.beginTransaction({ key })).transactionToken;
  await app.executeInTransaction({ transactionToken: token, sql: "update items set n = 2 where id = 'own'" });
  const unknown = `${t.router.routerId}.${"A".repeat(22)}`;
  const never = await assertCode(other.executeInTransaction({ transactionToken: unknown, sql: "select 1" }), Code.NotFound, "unknown token");
  for (const call of [
    () => other.executeInTransaction({ transactionToken: token, sql: "update items set n = 3 where id = 'own'" }),
    () => other.commitTransaction({ transactionToken: token }),
    () => other.rollbackTransaction({ transactionToken: token }),
  ]) {
    const err = await assertCode(call(), Code.NotFound, "another identity");
    assert.is(err.rawMessage, never.rawMessage, "the same answer as for a token that does not exist");
    assert.not.match(err.rawMessage, token.split(".")[1], "no token in messages");
  }
  const misrouted = await assertCode(app.commitTransaction({ transactionToken: `otherrouter.${"B".repeat(22)}` }), Code.NotFound, "another router's token");
  assert.match(misrouted.rawMessage, "router instance");
  const reader = clientFor(RouterService, t.router.url, "grpc", { token: readerKey.key });
  await assertCode(reader.beginTransaction({ key }), Code.PermissionDenied, "without the right");
  assert.is((await app.commitTransaction({ transactionToken: token })).outcome, TransactionOutcome.COMMITTED, "the owner still can");
  assert.is(await value("own"), 2);
});

test("concurrent calls on one token are queued and run one at a time in arrival order; a queued call's deadline never cancels another's statement", async () => {
  const token = (await app.beginTransaction({ key })).transactionToken;
  const stamp = (i: number) => app.executeInTransaction({ transactionToken: token, sql: "select $1::int8, clock_timestamp()::text, pg_sleep(0.05), clock_timestamp()::text", params: [int(BigInt(i))] });
  const answers = await Promise.all([stamp(1), stamp(2), stamp(3), stamp(4)]);
  const spans = answers.map((a) => { const [[i, start, , end]] = cells(a); return { i: Number(i), start: String(start), end: String(end) }; });
  assert.equal(spans.map((s) => s.i), [1, 2, 3, 4]);
  for (let j = 1; j < spans.length; j++) assert.ok(spans[j].start >= spans[j - 1].end, `call ${j + 1} began after call ${j} ended`);

  // A long statement, and behind it a call whose deadline passes while it waits: that call fails
  // without running, and the cancel it would have sent never reaches the statement running.
  const long = app.executeInTransaction({ transactionToken: token, sql: "select pg_sleep(0.6), 'long-probe'" });
  await waitFor("the long statement to run", async () => ((await admin`select 1 from pg_stat_activity where query like '%long-probe%' and state = 'active' and pid <> pg_backend_pid()`).length ? true : undefined));
  await assertCode(app.executeInTransaction({ transactionToken: token, sql: "select 'queued-probe'" }, { timeoutMs: 100 }), Code.DeadlineExceeded, "queued past its deadline");
  await long;
  const [[ok]] = cells(await app.executeInTransaction({ transactionToken: token, sql: "select 'still fine'" }));
  assert.is(ok, "still fine", "the transaction was not aborted by a stray cancel");

  // A call's own deadline cancels its statement on Postgres; the transaction is then aborted.
  await assertCode(app.executeInTransaction({ transactionToken: token, sql: "select pg_sleep(30), 'deadline-probe'" }, { timeoutMs: 300 }), Code.DeadlineExceeded, "its own deadline");
  await waitFor("the statement to be cancelled on Postgres", async () =>
    ((await admin`select 1 from pg_stat_activity where query like '%deadline-probe%' and state = 'active' and pid <> pg_backend_pid()`).length === 0 ? true : undefined));
  await assertCode(app.commitTransaction({ transactionToken: token }), Code.Aborted, "commit after a cancelled statement");
  await allReleased("serialized calls");
});

test("resharding: a session whose key moved is rolled back; the sources' epoch guard refuses its writes; a cutover cannot pass its open writes", async () => {
  await put("moving", 1);
  const table: TableShape = { qualified: '"public"."items"' } as TableShape;
  // The router's side: the map in force now gives the key to the other shard.
  const token = (await app.beginTransaction({ key })).transactionToken;
  await app.executeInTransaction({ transactionToken: token, sql: "update items set n = 2 where id = 'moving'" });
  // A cutover waits for every open write on the moving tables (SHARE lock) and cannot pass this one.
  const blocked = await admin.begin(async (tx) => {
    await tx`set local lock_timeout = '200ms'`;
    await tx`lock table items in share mode`;
    return "locked";
  }).catch((e: { code?: string }) => e.code);
  assert.is(blocked, "55P03", "the cutover's lock waits for the session's write");
  const original = t.router.planner.map;
  const otherShard = t.cluster.shards.find((s) => s.name !== shard)!.name;
  t.router.planner.swapMap(buildShardMap(t.config.placement, [{ name: otherShard, weight: 1 }], { version: original.version + 1, epoch: original.epoch }));
  try {
    const moved = await assertCode(app.executeInTransaction({ transactionToken: token, sql: "update items set n = 3 where id = 'moving'" }), Code.Aborted, "after the key moved");
    assert.match(moved.rawMessage, `moved to shard ${otherShard}`);
    const after = await assertCode(app.commitTransaction({ transactionToken: token }), Code.NotFound, "commit after the move");
    assert.match(after.rawMessage, "moved");
  } finally {
    t.router.planner.swapMap(original);
  }
  assert.is(await value("moving"), 1, "nothing of it reached the old owner");

  // The database's side: a source whose minimum epoch was raised refuses the session's writes.
  await installEpochGuard(admin, [table]);
  const fenced = (await app.beginTransaction({ key })).transactionToken;
  const [[epoch]] = cells(await app.executeInTransaction({ transactionToken: fenced, sql: "select current_setting('shardrouter.epoch')" }));
  try {
    await setMinimumEpoch(admin, Number(epoch) + 1);
    const refused = await assertCode(app.executeInTransaction({ transactionToken: fenced, sql: "update items set n = 4 where id = 'moving'" }), Code.Aborted, "a write under an old epoch");
    assert.match(refused.rawMessage, "shard map is older");
    await assertCode(app.commitTransaction({ transactionToken: fenced }), Code.NotFound, "commit after the refusal");
  } finally {
    await setMinimumEpoch(admin, 0);
    await admin`drop trigger if exists shardrouter_epoch_guard on items`;
  }
  assert.is(await value("moving"), 1);
  await allReleased("resharding");
});
test("a type created inside a session: once committed, later results name it (the name cache keeps no miss)", async () => {
  await admin`drop type if exists itx_mood`;
  const token = (await other.beginTransaction({ key })).transactionToken;
  await other.executeInTransaction({ transactionToken: token, sql: "create type itx_mood as enum ('ok')" });
  // The router looks type names up on another connection, which cannot see this one yet.
  await other.executeInTransaction({ transactionToken: token, sql: "select 'ok'::itx_mood as m" });
  assert.is((await other.commitTransaction({ transactionToken: token })).outcome, TransactionOutcome.COMMITTED);
  const res = await other.executeOnShard({ key, sql: "select 'ok'::itx_mood as m" });
  assert.is(res.result!.columns[0].type, "itx_mood");
  await admin`drop type itx_mood`;
  await allReleased("the type session");
});

test("log lines never carry a token, a parameter or a credential", async () => {
  const secret = "p4ram-secret-7731";
  const begun = await app.beginTransaction({ key, idleTimeoutMs: 5000 });
  // Postgres' message quotes the bad value: it reaches the caller, never the log.
  const err = await assertCode(app.executeInTransaction({ transactionToken: begun.transactionToken, sql: "select $1::int", params: [str(secret)] }), Code.InvalidArgument, "a bad parameter");
  assert.match(err.rawMessage, secret, "the caller is told");
  await assertCode(app.commitTransaction({ transactionToken: begun.transactionToken }), Code.Aborted, "commit");
  await assertCode(other.executeInTransaction({ transactionToken: begun.transactionToken, sql: "select 1" }), Code.NotFound, "another identity");
  const idle = await app.beginTransaction({ key, idleTimeoutMs: 200 });
  const idleLines = lines.filter((l) => l.includes("idle_timeout")).length;
  await allReleased("the idle transaction");
  assert.is(lines.filter((l) => l.includes("idle_timeout")).length, idleLines + 1, "its end was logged");
  const random = [begun.transactionToken, idle.transactionToken].map((tok) => tok.split(".")[1]);
  assert.ok(lines.some((l) => l.includes("ExecuteInTransaction")), "access lines were logged");
  for (const line of lines) {
    for (const r of random) assert.not.ok(line.includes(r), `a token in: ${line}`);
    assert.not.ok(line.includes(secret), `a parameter in: ${line}`);
    assert.not.ok(line.includes(appKey.key) || line.includes(appPassword), `a credential in: ${line}`);
  }
});

test("resharding: a cutover's fence rolls back open writable sessions on its moving keys at once (and read-only ones that took a table lock); other read-only ones go on", async () => {
  // Last in this file: the fence gives the router's connections a new write epoch.
  await put("fenced", 1);
  const catalog = await Catalog.open(t.config.catalog!);
  const fences = new FenceStore(catalog);
  const job = "interactive-fence";
  const writer = (await app.beginTransaction({ key })).transactionToken;
  await app.executeInTransaction({ transactionToken: writer, sql: "update items set n = 2 where id = 'fenced'" });
  const reader = (await app.beginTransaction({ key, readOnly: true })).transactionToken;
  // READ ONLY allows LOCK TABLE in every mode: ROW EXCLUSIVE is what a cutover's SHARE lock waits for.
  const locker = (await app.beginTransaction({ key, readOnly: true, idleTimeoutMs: 60_000 })).transactionToken;
  await app.executeInTransaction({ transactionToken: locker, sql: "lock table items in row exclusive mode" });
  try {
    const otherShard = t.cluster.shards.find((s) => s.name !== shard)!.name;
    await fences.raise(job, t.router.planner.map.version, t.config.placement, [{ name: otherShard, weight: 1, state: "active" }]);
    await writeAsAnother("fenced", 3); // waits for the row's lock: the router lets go when it hears of the fence
    assert.is(await value("fenced"), 3);
    const err = await assertCode(app.executeInTransaction({ transactionToken: writer, sql: "select 1" }), Code.NotFound, "the writable session");
    assert.match(err.rawMessage, "resharding cutover is moving its key");
    await admin.begin(async (tx) => { // as the cutover does on the moving tables
      await tx`set local lock_timeout = '10s'`;
      await tx`lock table items in share mode`;
    });
    const locked = await assertCode(app.executeInTransaction({ transactionToken: locker, sql: "select 1" }), Code.NotFound, "the read-only session that locked");
    assert.match(locked.rawMessage, "resharding cutover is moving its key", locked.rawMessage);
    const [[one]] = cells(await app.executeInTransaction({ transactionToken: reader, sql: "select 1" }));
    assert.is(one, 1n, "the read-only session goes on");
    await app.rollbackTransaction({ transactionToken: reader });
  } finally {
    await fences.abort(job);
    await fences.remove(job);
    await catalog.close();
  }
  await allReleased("a cutover's fence");
});

test.run();
