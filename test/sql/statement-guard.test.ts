import { Code, ConnectError } from "@connectrpc/connect";
import { test } from "../harness/uvu.js";
import * as assert from "uvu/assert";
import { PostgresErrorDetailSchema } from "../../gen/shardrouter/v1/errors_pb.js";
import { loadParser } from "../../server/sql/parser.js";
import { checkStatement, checkTransactionStatement } from "../../server/sql/statement-guard.js";
import { schemaChange } from "../../server/sql/statement-kind.js";

await loadParser();

function rejected(sql: string): ConnectError {
  try {
    checkStatement(sql);
  } catch (err) {
    assert.instance(err, ConnectError);
    return err as ConnectError;
  }
  throw new Error(`expected ${JSON.stringify(sql)} to be rejected`);
}

test("ordinary statements run on shared connections", () => {
  for (const sql of [
    "select * from accounts where id = $1",
    "insert into accounts (id, balance) values ($1, $2) returning *",
    "update accounts set balance = balance - $1 where id = $2",
    "with t as (select 1) select * from t;",
    "select temp from weather",                       // a column named temp
    "select 'BEGIN; SET x = 1' as s",                 // keywords inside a literal
    "select $$ set_config $$",                         // ... and inside dollar quotes
    "select 1 -- ; set x = 1\n",
    "/* begin */ select 1 /* nested /* comment */ set */",
    'select "set" from t',
    "create table if not exists t (id int)",
    "select pg_advisory_xact_lock(1)",                // transaction-scoped: released at statement end
    "select set_config('lock_timeout', '1s', true)",  // transaction-scoped too
    "select count(*), sum(balance), now(), gen_random_uuid(), coalesce(null, 1), lower('A') from accounts",
    "select 1 = any(array[1]), 2 operator(pg_catalog.+) 3, 'a' like 'b', 1 between 0 and 2, '{}'::jsonb @> '{}'",
    "select * from generate_series(1, 3) g",
    "explain select * from accounts",
    "create function f() returns int language sql set search_path = public as 'select 1'", // scoped to f's calls
    "create unlogged table u (x int)",
    "select nextval('s')",
    "notify chan, 'payload'",                          // transactional: delivered at commit, nothing stays
    "select * from accounts order by id using <",      // built-in operators in every position
    "select 1 = any (select 1), 1 operator(pg_catalog.<) all (select 2)",
    "create table y (a int4range, exclude using gist (a with &&))",
    "select * from pg_settings where name = 'search_path'", // reading the view is harmless
    "update my_schema.pg_settings set setting = 'x'",  // someone's own table of that name
  ]) assert.is(checkStatement(sql), "shared", sql);
});

test("code nobody can read off the text runs isolated", () => {
  for (const sql of [
    "DO $$BEGIN PERFORM set_config('search_path', 'pg_catalog', false); END$$",
    "do language plpgsql $x$ begin perform pg_advisory_lock(42); end $x$",
    "call p()",
    "select my_function(1)",                           // not built in
    "select public.lower('A')",                        // schema-qualified to a user schema
    'select "SET_CONFIG"(\'a\', \'b\', false)',         // quoted: a different (user) name
    "select 1 ### 2",                                  // a user-defined operator
    "select 2 operator(public.+) 3",
    "select * from accounts where f(id)",
    "explain analyze select f()",
    "create index on accounts (my_hash(id))",          // runs my_hash over every row
    "create extension if not exists pgcrypto",
    // built-ins that run SQL handed to them as text
    "select query_to_xml('select set_config(''search_path'', ''x'', false)', true, false, '')",
    "select pg_catalog.query_to_xmlschema($1, true, false, '')",
    "select query_to_xml_and_xmlschema($1, true, false, '')",
    "select cursor_to_xml('c', 1, false, false, '')",
    "select * from ts_stat('select to_tsvector(set_config(''search_path'', ''x'', false))')",
    "select ts_rewrite('a'::tsquery, 'select ''a''::tsquery, ''b''::tsquery')",
    // user operators outside a plain expression
    "select 1 operator(public.===) any (select 1)",
    "select * from accounts order by id using <#<",
    "select array_agg(id order by id using operator(public.<)) from accounts",
    "create table x (a int, exclude using gist (a with &&&))",
  ]) assert.is(checkStatement(sql), "isolated", sql);
});

test("session state is refused with INVALID_ARGUMENT and a reason, whatever the spelling", () => {
  const cases: [string, string][] = [
    ["BEGIN", "transactions"], ["  begin isolation level serializable", "transactions"], ["start transaction", "transactions"],
    ["commit", "transactions"], ["rollback", "transactions"], ["savepoint a", "transactions"], ["prepare transaction 'x'", "transactions"],
    ["set search_path = evil", "session settings"], ["SET LOCAL x = 1", "session settings"], ["reset all", "session settings"],
    ["set role postgres", "session settings"], ["set session authorization default", "session settings"],
    ["listen chan", "notifications"], ["unlisten *", "notifications"],
    ["prepare p as select 1", "prepared statements"], ["execute p", "prepared statements"], ["deallocate all", "prepared statements"],
    ["create temp table t (x int)", "temporary tables"], ["create global temporary table t (x int)", "temporary tables"],
    ["select * into temp t from accounts", "temporary tables"], ["create table pg_temp.t (x int)", "temporary tables"],
    ['create table "pg_temp".t (x int)', "temporary tables"], ["create or replace temp view v as select 1", "temporary tables"],
    ["create temp sequence s", "temporary tables"], ["create table t as select 1 as x into temporary u", "temporary tables"],
    ["create function pg_temp.f() returns int language sql as 'select 1'", "temporary objects"],
    ["create type pg_temp.t as (a int)", "temporary tables"],
    ["select set_config('search_path', 'x', false)", "session settings"],
    ["select pg_catalog.set_config('search_path', 'x', false)", "session settings"],
    ['select U&"\\0073et_config"(\'search_path\', \'x\', false)', "session settings"],
    ['select "set_config"(\'search_path\', \'x\', false)', "session settings"],
    ["select set_config('search_path', 'x', $1)", "session settings"], // not known to be local
    // Who the session is and the router's own settings: not even for one transaction (auth, 2PC ownership).
    ["select set_config('role', 'shardrouter_router', true)", "who the session is"],
    ["select set_config('ROLE', 'x', true)", "who the session is"],
    ["select set_config('session_authorization', 'postgres', true)", "who the session is"],
    ["select set_config('shardrouter.epoch', '999', true)", "router's own settings"],
    ["select set_config(lower('ROLE'), 'x', true)", "named by an expression"],
    ["select set_config($1, 'x', true)", "named by an expression"],
    ["select setseed(0.5)", "session settings"],
    ["select pg_advisory_lock(42)", "session advisory locks"], ['select "pg_advisory_lock"(42)', "session advisory locks"],
    ["select /* odd */ pg_catalog . /* places */ pg_try_advisory_lock(1)", "session advisory locks"],
    ["select currval('s')", "sequence values"], ["select lastval()", "sequence values"],
    ["declare c cursor for select 1", "cursors"], ["fetch next from c", "cursors"], ["close c", "cursors"],
    ["copy accounts to stdout", "COPY"], ["discard all", "session settings"], ["load 'x'", "session settings"],
    ["alter role current_user set search_path = x", "later sessions"], ["alter database shardrouter set search_path = x", "later sessions"],
    ["select * from accounts where balance > (select count(*) from (select pg_advisory_lock(1)) x)", "session advisory locks"],
    // pg_settings' rule calls set_config(…, false)
    ["update pg_settings set setting = 'pg_catalog' where name = 'search_path'", "session settings"],
    ["UPDATE pg_catalog.\"pg_settings\" SET setting = 'x' WHERE name = 'search_path'", "session settings"],
    ["with u as (update pg_settings set setting = 'x' where name = 'search_path' returning 1) select * from u", "session settings"],
    ["insert into pg_settings (name, setting) values ('search_path', 'x')", "session settings"],
    ["merge into pg_settings s using (select 1) x on true when matched then update set setting = 'x'", "session settings"],
  ];
  for (const [sql, reason] of cases) {
    const err = rejected(sql);
    assert.is(err.code, Code.InvalidArgument, sql);
    assert.ok(err.rawMessage.includes(reason), `${sql}: ${err.rawMessage}`);
  }
});

test("several statements, empty statements and syntax errors are refused", () => {
  assert.ok(rejected("select 1; select 2").rawMessage.includes("one statement"));
  assert.ok(rejected("select 1; begin").rawMessage.includes("one statement"));
  assert.ok(rejected("").rawMessage.includes("must contain"));
  assert.ok(rejected("  -- just a comment\n").rawMessage.includes("must contain"));
  assert.is(checkStatement("select 1;  -- trailing comment is fine\n"), "shared");
  const syntax = rejected("selec 1");
  assert.match(syntax.rawMessage, "syntax error");
  assert.is(syntax.findDetails(PostgresErrorDetailSchema)[0]?.sqlstate, "42601");
});

test("E-strings with escaped quotes hide nothing", () => {
  assert.is(checkStatement("select E'it\\'s; set x' from t"), "shared");
  assert.is(checkStatement("select 'it''s; set' from t"), "shared");
});

test("verdicts are remembered for texts that passed only: a refused text is refused every time", () => {
  for (let i = 0; i < 3; i++) {
    assert.is(checkStatement("select id from accounts where id = $1"), "shared");
    assert.is(checkStatement("do $$begin end$$"), "isolated");
    assert.is(rejected("set search_path = evil").code, Code.InvalidArgument);
  }
});

test("inside an interactive transaction: savepoints are allowed, other transaction control points to the RPCs, the rest as outside", () => {
  for (const sql of ["savepoint a", "SAVEPOINT \"my point\"", "release savepoint a", "release a", "rollback to savepoint a", "ROLLBACK TO a"]) {
    assert.is(checkTransactionStatement(sql), "shared", sql);
    assert.is(schemaChange(sql), undefined, `${sql}: no schema change (allowed while a reshard job runs)`);
    assert.is(rejected(sql).code, Code.InvalidArgument, `${sql}: still refused on a pooled connection`);
  }
  for (const sql of ["begin", "start transaction", "commit", "commit and chain", "end", "rollback", "abort", "prepare transaction 'x'", "commit prepared 'x'", "rollback prepared 'x'"]) {
    let err: unknown;
    try { checkTransactionStatement(sql); } catch (e) { err = e; }
    assert.instance(err, ConnectError, sql);
    assert.is((err as ConnectError).code, Code.InvalidArgument, sql);
    assert.match((err as ConnectError).rawMessage, "CommitTransaction or RollbackTransaction", sql);
  }
  assert.is(checkTransactionStatement("select 1"), "shared");
  assert.is(checkTransactionStatement("do $$ begin end $$"), "isolated");
  for (const sql of ["set search_path = x", "savepoint a; select 1", "select set_config('a.b', 'c', false)", "select from("]) {
    assert.throws(() => checkTransactionStatement(sql), (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument, sql);
  }
});

test.run();
