import { Code, ConnectError } from "@connectrpc/connect";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { checkStatement, keywords } from "../../server/execution/statement-guard.js";

function rejected(sql: string): ConnectError {
  try {
    checkStatement(sql);
  } catch (err) {
    assert.instance(err, ConnectError);
    return err as ConnectError;
  }
  throw new Error(`expected ${JSON.stringify(sql)} to be rejected`);
}

test("ordinary statements pass", () => {
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
  ]) checkStatement(sql);
});

test("session state is rejected with INVALID_ARGUMENT and a reason", () => {
  const cases: [string, string][] = [
    ["BEGIN", "transactions"], ["  begin isolation level serializable", "transactions"], ["start transaction", "transactions"],
    ["commit", "transactions"], ["rollback", "transactions"], ["savepoint a", "transactions"],
    ["set search_path = evil", "session settings"], ["SET LOCAL x = 1", "session settings"], ["reset all", "session settings"],
    ["listen chan", "notifications"], ["prepare p as select 1", "prepared statements"], ["deallocate all", "prepared statements"],
    ["create temp table t (x int)", "temporary tables"], ["create global temporary table t (x int)", "temporary tables"],
    ["select * into temp t from accounts", "temporary tables"], ["create table pg_temp.t (x int)", "temporary tables"],
    ["select set_config('search_path', 'x', false)", "session settings"],
    ["select pg_advisory_lock(42)", "session advisory locks"],
    ["declare c cursor for select 1", "cursors"], ["copy accounts to stdout", "COPY"], ["discard all", "session settings"],
  ];
  for (const [sql, reason] of cases) {
    const err = rejected(sql);
    assert.is(err.code, Code.InvalidArgument, sql);
    assert.ok(err.rawMessage.includes(reason), `${sql}: ${err.rawMessage}`);
  }
});

test("several statements and empty statements are rejected", () => {
  assert.ok(rejected("select 1; select 2").rawMessage.includes("one statement"));
  assert.ok(rejected("select 1; begin").rawMessage.includes("one statement"));
  assert.ok(rejected("").rawMessage.includes("must contain"));
  assert.ok(rejected("  -- just a comment\n").rawMessage.includes("must contain"));
  checkStatement("select 1;  -- trailing comment is fine\n");
});

test("keywords skips E-strings with escaped quotes", () => {
  assert.equal(keywords("select E'it\\'s; set x' from t"), ["SELECT", "FROM", "T"]);
  assert.equal(keywords("select 'it''s; set' from t"), ["SELECT", "FROM", "T"]);
});

test("verdicts are remembered for texts that passed only: a refused text is refused every time", () => {
  for (let i = 0; i < 3; i++) {
    checkStatement("select id from accounts where id = $1");
    assert.is(rejected("set search_path = evil").code, Code.InvalidArgument);
  }
});

test.run();
