// One caller's statement must not change what later callers' sessions look like (issue 10). Every
// vector is sent through the router, then many concurrent calls on the same shard look at every one
// of the router's pooled backends (found from outside, in pg_stat_activity) and check each is clean:
// search_path, current_user, settings, advisory locks, prepared statements, LISTEN channels, temp
// objects.
import { Code } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import postgres from "postgres";
import { PostgresErrorDetailSchema } from "../../gen/shardrouter/v1/errors_pb.js";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import { hook, test } from "../harness/uvu.js";
import { failure } from "../harness/failure.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { plainRows } from "./values.js";

const key = "acct-1";
let t: TestRouter;
let admin: postgres.Sql; // the shard's primary, as the superuser: sees every backend
let baseline: Session;
const str = (value: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value } });

interface Session { pid: string; searchPath: string; user: string; timeout: string; custom: string; locks: string; prepared: string; channels: string; temps: string }

const look = `select pg_backend_pid() as pid, current_setting('search_path') as search_path, current_user as "user",
  current_setting('statement_timeout') as timeout, coalesce(current_setting('app.tenant', true), '') as custom,
  (select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()) as locks,
  (select count(*) from pg_prepared_statements where from_sql) as prepared,
  (select count(*) from pg_listening_channels()) as channels,
  (select count(*) from pg_class where relnamespace = pg_my_temp_schema()) as temps`;

async function lookOnce(): Promise<Session[]> {
  const calls = Array.from({ length: 16 }, () => t.grpc.executeOnShard({ key, sql: look }));
  return (await Promise.all(calls)).map((r) => {
    const [pid, searchPath, user, timeout, custom, locks, prepared, channels, temps] = plainRows(r.result!)[0].map(String);
    return { pid, searchPath, user, timeout, custom, locks, prepared, channels, temps };
  });
}

/** Looks until every pooled backend the router has open on the shard answered at least once; all must be clean. */
async function assertCleanSessions(after: string): Promise<void> {
  const seen = new Map<string, Session>();
  await waitFor(`every pooled backend answering after ${after}`, async () => {
    for (const s of await lookOnce()) seen.set(s.pid, s);
    const live = await admin<{ pid: string }[]>`select pid::text from pg_stat_activity where application_name = 'shardrouter' and backend_type = 'client backend'`;
    return live.every((b) => seen.has(b.pid)) ? true : undefined;
  });
  for (const s of seen.values()) {
    assert.equal({ ...s, pid: baseline.pid }, baseline, `backend ${s.pid} after ${after}`);
  }
  // And from outside: nobody holds an advisory lock any more (an isolated connection closes just after its answer).
  await waitFor(`no advisory locks held after ${after}`, async () => {
    const [{ n }] = await admin<{ n: string }[]>`select count(*)::text as n from pg_locks where locktype = 'advisory'`;
    return n === "0" ? true : undefined;
  });
}

test.before(hook(async () => {
  t = await startTestRouter({ shards: 2, pool: { max: 4, maxIsolated: 2 } });
  const { shard } = await t.router.planner.route(key);
  admin = t.direct(t.cluster.shards.find((s) => s.name === shard.name)!.nodes[0]);
  baseline = (await lookOnce())[0];
  assert.is(baseline.searchPath, '"$user", public');
  assert.is(baseline.locks, "0");
}));

test.after(hook(async () => {
  await t?.stop();
}));

test("a DO block that changes search_path runs, and no later caller sees it", async () => {
  await t.grpc.executeOnShard({ key, sql: "DO $$BEGIN PERFORM set_config('search_path', 'pg_catalog', false); PERFORM set_config('app.tenant', 'evil', false); END$$" });
  await assertCleanSessions("a DO block with set_config");
  // The demo's own statements still find their tables.
  await t.grpc.executeOnShard({ key, sql: "create table if not exists session_probe (id text primary key)" });
  await t.grpc.executeOnShard({ key, sql: "select count(*) from session_probe" });
});

test("a DO block that takes a session advisory lock leaves no lock behind", async () => {
  await t.grpc.executeOnShard({ key, sql: "do $x$ begin perform pg_advisory_lock(42); perform pg_advisory_lock_shared(43); end $x$" });
  await assertCleanSessions("a DO block with pg_advisory_lock");
});

test("quoted and Unicode-escaped names of set_config and pg_advisory_lock are refused", async () => {
  for (const sql of [
    `select "set_config"('search_path', 'pg_catalog', false)`,
    `select "pg_advisory_lock"(42)`,
    `select pg_catalog."pg_advisory_lock"(42)`,
    `select U&"\\0073et_config"('search_path', 'pg_catalog', false)`,
    `select U&"pg_advisory_lock"(42)`,
    `select /* a */ "pg_catalog" /* b */ . /* c */ set_config('search_path', 'pg_catalog', false)`,
  ]) {
    const err = await failure(t.grpc.executeOnShard({ key, sql }));
    assert.is(err.code, Code.InvalidArgument, sql);
    assert.match(err.rawMessage, /session (settings|advisory locks)/, sql);
  }
  await assertCleanSessions("refused quoted names");
});

test("a user function that calls set_config(…, false), created by one call and invoked by another, is contained", async () => {
  await t.grpc.executeOnAll({ sql: `create or replace function evil_sql() returns text language sql as $$ select set_config('search_path', 'pg_catalog', false) $$` });
  await t.grpc.executeOnAll({
    sql: `create or replace function evil_plpgsql() returns int language plpgsql as $$
      begin
        perform set_config('search_path', 'pg_catalog', false);
        perform pg_advisory_lock(7);
        execute 'listen evil_channel';
        create temp table if not exists evil_temp (x int);
        return 1;
      end $$`,
  });
  const sqlFn = await t.grpc.executeOnShard({ key, sql: "select evil_sql() as v" });
  assert.is(plainRows(sqlFn.result!)[0][0], "pg_catalog");
  await assertCleanSessions("a SQL function with set_config");
  await t.grpc.executeOnShard({ key, sql: "select public.evil_plpgsql()" });
  await assertCleanSessions("a plpgsql function with set_config, an advisory lock, LISTEN and a temp table");
  await t.grpc.executeOnAll({ sql: "select evil_plpgsql()" });
  await assertCleanSessions("the same function on every shard");
});

test("UPDATE pg_settings (set_config through the view's rule) is refused, however it is written", async () => {
  for (const sql of [
    "update pg_settings set setting = 'pg_catalog' where name = 'search_path'",
    `UPDATE "pg_catalog"."pg_settings" SET setting = 'pg_catalog' WHERE name = 'search_path'`,
    "with u as (update pg_settings set setting = 'pg_catalog' where name = 'search_path' returning 1) select count(*) from u",
  ]) {
    const err = await failure(t.grpc.executeOnShard({ key, sql }));
    assert.is(err.code, Code.InvalidArgument, sql);
    assert.match(err.rawMessage, "session settings", sql);
  }
  await assertCleanSessions("refused writes to pg_settings");
});

test("built-ins that run SQL given as text (query_to_xml, ts_stat, ts_rewrite) are contained", async () => {
  const inner = "select set_config('search_path', 'pg_catalog', false), pg_advisory_lock(11), to_tsvector('a')";
  await t.grpc.executeOnShard({ key, sql: "select query_to_xml($1, true, false, '') as x", params: [str(inner)] });
  await assertCleanSessions("query_to_xml with set_config inside");
  await t.grpc.executeOnShard({ key, sql: "select query_to_xml_and_xmlschema($1, true, false, '') as x", params: [str(inner)] });
  await t.grpc.executeOnShard({ key, sql: "select * from ts_stat($1)", params: [str("select to_tsvector(set_config('search_path', 'pg_catalog', false))")] });
  await assertCleanSessions("ts_stat with set_config inside");
  await t.grpc.executeOnShard({ key, sql: "select ts_rewrite('a'::tsquery, $1)", params: [str("select 'a'::tsquery, (set_config('search_path', 'pg_catalog', false) || 'b')::tsquery")] });
  await assertCleanSessions("ts_rewrite with set_config inside");
});

test("a user operator reached through OPERATOR(…) ANY or ALL (a subquery comparison) is contained", async () => {
  await t.grpc.executeOnAll({ sql: `create or replace function evil_lt(int, int) returns boolean language plpgsql as $$
    begin perform set_config('search_path', 'pg_catalog', false); perform pg_advisory_lock(12); return $1 < $2; end $$` });
  await t.grpc.executeOnAll({ sql: `do $$ begin
    if not exists (select 1 from pg_operator where oprname = '<#<') then
      create operator public.<#< (leftarg = int, rightarg = int, function = evil_lt);
    end if; end $$` });
  const any = await t.grpc.executeOnShard({ key, sql: "select 1 operator(public.<#<) any (select 2) as v" });
  assert.is(plainRows(any.result!)[0][0], true, "the operator's function ran");
  await assertCleanSessions("OPERATOR(public.<#<) ANY");
  const all = await t.grpc.executeOnShard({ key, sql: "select 1 <#< all (select 2) as v" });
  assert.is(plainRows(all.result!)[0][0], true);
  await assertCleanSessions("<#< ALL");
  // (ORDER BY … USING needs a btree operator class, which only a superuser creates; the guard's unit test covers it.)
});

test("CALL of a procedure is contained", async () => {
  await t.grpc.executeOnAll({ sql: `create or replace procedure evil_proc() language plpgsql as $$ begin perform set_config('search_path', 'pg_catalog', false); end $$` });
  await t.grpc.executeOnShard({ key, sql: "call evil_proc()" });
  await assertCleanSessions("CALL");
});

test("temp views and tables in a quoted pg_temp are refused", async () => {
  for (const sql of ["create or replace temp view v as select 1", `create table "pg_temp".t (x int)`, `create table pg_temp_3.t (x int)`, `create view "pg_temp".v as select 1`]) {
    const err = await failure(t.grpc.executeOnShard({ key, sql }));
    assert.is(err.code, Code.InvalidArgument, sql);
    assert.match(err.rawMessage, "temporary", sql);
  }
  await assertCleanSessions("refused temp objects");
});

test("a transaction with a DO block commits and its connection does not go back to the pool", async () => {
  await t.grpc.executeOnShard({ key, sql: "create table if not exists tx_probe (id text primary key, n int)" });
  const res = await t.grpc.executeTransaction({
    requestId: `isolated-${Date.now()}`,
    statements: [
      { key, sql: "insert into tx_probe values ($1, 1) on conflict (id) do update set n = tx_probe.n + 1", params: [str(key)] },
      { key, sql: "DO $$BEGIN PERFORM set_config('search_path', 'pg_catalog', false); PERFORM pg_advisory_lock(9); END$$" },
    ],
  });
  assert.is(res.results.length, 2);
  const [{ n }] = await admin<{ n: number }[]>`select n from tx_probe where id = ${key}`;
  assert.ok(n >= 1, "the transaction committed");
  await assertCleanSessions("ExecuteTransaction with a DO block");
});

test("a deadline cancels an isolated statement on Postgres and gives its slot back", async () => {
  // maxIsolated is 2: three in a row would wait for a slot if a cancelled one kept it.
  for (let i = 0; i < 3; i++) {
    const err = await failure(t.grpc.executeOnShard({ key, sql: "do $$begin perform pg_sleep(30); end$$" }, { timeoutMs: 300 }));
    assert.is(err.code, Code.DeadlineExceeded);
  }
  await waitFor("the cancelled DO blocks to stop on Postgres", async () => {
    const rows = await admin`select 1 from pg_stat_activity where query like 'do $$begin perform pg_sleep(30)%' and state = 'active'`;
    return rows.length === 0 ? true : undefined;
  });
  const ok = await t.grpc.executeOnShard({ key, sql: "do $$begin perform pg_sleep(0); end$$" }, { timeoutMs: 5000 });
  assert.is(ok.result?.command, "DO");
  await waitFor("no isolated slot in use (metrics)", async () => {
    const text = await fetch(`${t.router.url}/metrics`).then((r) => r.text());
    const inUse = text.split("\n").filter((l) => l.startsWith("shardrouter_isolated_in_use{"));
    return inUse.length > 0 && inUse.every((l) => l.endsWith(" 0")) ? true : undefined;
  });
  await assertCleanSessions("cancelled isolated statements");
});

test("isolated statements beyond maxWaiting are refused at once, and a paused node does not keep their slots", async () => {
  const { shard } = await t.router.planner.route(key);
  const primary = t.cluster.shards.find((s) => s.name === shard.name)!.nodes[0];
  await t.cluster.pauseNode(primary.name);
  try {
    const hung = await Promise.all([0, 1].map(() => failure(t.grpc.executeOnShard({ key, sql: "do $$begin end$$" }, { timeoutMs: 300 }))));
    for (const err of hung) assert.is(err.code, Code.DeadlineExceeded);
  } finally {
    await t.cluster.resumeNode(primary.name);
  }
  // Both slots come back once the node answers again (or the close gives up): a new isolated statement runs.
  const ok = await t.grpc.executeOnShard({ key, sql: "do $$begin end$$" }, { timeoutMs: 10_000 });
  assert.is(ok.result?.command, "DO");
});

test("a refused statement carries no SQLSTATE of a shard; a syntax error carries 42601", async () => {
  const syntax = await failure(t.connect.executeOnShard({ key, sql: "selec 1" }));
  assert.is(syntax.code, Code.InvalidArgument);
  assert.is(syntax.findDetails(PostgresErrorDetailSchema)[0]?.sqlstate, "42601");
});

test.run();
