// Execute places a key by its column's type, read from the shards' catalog: on an int8 key, '0123',
// 123.0 and the string parameter "0123" are the key 123, on the shard ExecuteOnShard/Route give "123"
// (rows written either way are found either way); the table's schema is learnt when it is created
// after the router started, and read afresh after a schema change through ExecuteOnAll or Execute.
// A GROUP BY alias that a column of the table (not otherwise mentioned) shadows is refused.
import { Code } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import type { ResultSet, Value } from "../../gen/shardrouter/v1/value_pb.js";
import { failure } from "../harness/failure.js";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
const str = (value: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value } }) as Value;
const rows = (r: ResultSet | undefined) => (r?.rows ?? []).map((row) => row.values.map((v) => (v.kind.case === undefined || v.kind.case === "nullValue" ? null : String(v.kind.value))));
const shardOf = async (key: string) => (await t.grpc.route({ key })).shard;

test.before(hook(async () => {
  t = await startTestRouter({ shards: 3, tables: { sharded: { things: "id" }, reference: [] } });
}));
test.after(hook(async () => { await t?.stop(); }));

/** Keys 1…200 whose text with a leading zero is placed on another shard than the key (the bug shows). */
async function misplacedKeys(count: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 1; out.length < count && i < 200; i++) if (await shardOf(String(i)) !== await shardOf(`0${i}`)) out.push(String(i));
  assert.is(out.length, count, "keys whose written forms hash to other shards");
  return out;
}

test("a table created after the router started is learnt by the first Execute; keys written either way are found either way", async () => {
  const [a, b] = await misplacedKeys(2);
  // Not there yet: the statement fails in PostgreSQL (keys placed as written), and nothing is cached.
  const missing = await failure(t.grpc.execute({ sql: `select * from things where id = '0${a}'` }));
  assert.match(missing.rawMessage, 'relation "things" does not exist');
  await t.grpc.executeOnAll({ sql: "create table things (id int8 primary key, v text, grp text)" });

  // Written through ExecuteOnShard by the key's decimal text; read through Execute in other forms.
  await t.grpc.executeOnShard({ key: a, sql: "insert into things (id, v) values ($1, 'on shard')", params: [str(a)] });
  for (const [sql, params] of [
    [`select id, v from things where id = '0${a}'`, []], [`select id, v from things where id = ${a}.0`, []],
    ["select id, v from things where id = $1", [str(`0${a}`)]], [`select id, v from things where id in ('00${a}')`, []],
  ] as [string, Value[]][]) {
    const r = await t.grpc.execute({ sql, params });
    assert.equal(r.shards, [await shardOf(a)], sql);
    assert.equal(rows(r.result), [[a, "on shard"]], sql);
  }

  // Inserted through Execute with a zero-padded key: on Route(key)'s shard, found by ExecuteOnShard.
  const ins = await t.grpc.execute({ sql: `insert into things (id, v) values ('0${b}', 'via execute')` });
  assert.equal(ins.shards, [await shardOf(b)]);
  const back = await t.grpc.executeOnShard({ key: b, sql: "select id, v from things where id = $1", params: [str(b)] });
  assert.equal(rows(back.result), [[b, "via execute"]]);
  const all = await t.grpc.executeOnAll({ sql: "select id from things order by id" });
  assert.equal(rows(all.result).map((r) => r[0]), [a, b].sort((x, y) => Number(x) - Number(y)), "one row each, nowhere else");

  // What is no int8 is refused before it reaches a shard, naming the column and its type.
  const bad = await failure(t.grpc.execute({ sql: "select * from things where id = $1", params: [str("12x")] }));
  assert.is(bad.code, Code.InvalidArgument);
  assert.match(bad.rawMessage, 'things.id is bigint: the key "12x" is not an integer');
  const explained = await failure(t.grpc.explain({ sql: `select * from things where id = ${a}.5` }));
  assert.is(explained.code, Code.InvalidArgument);
});

test("a GROUP BY alias shadowed by a column the statement does not mention is refused; another alias merges", async () => {
  await t.grpc.execute({ sql: "insert into things (id, v, grp) values (1001, 'aa', 'x'), (1002, 'bbb', 'x'), (1003, 'cc', 'y')" });
  for (const call of [t.grpc.execute.bind(t.grpc), t.grpc.explain.bind(t.grpc)]) {
    const refused = await failure(call({ sql: "select length(v) as grp, count(*) from things where id > 1000 group by grp" }));
    assert.is(refused.code, Code.InvalidArgument);
    assert.match(refused.rawMessage, "GROUP BY grp, both a column and the alias of another expression");
  }
  const r = await t.grpc.execute({ sql: "select length(v) as len, count(*) from things where id > 1000 group by len order by len" });
  assert.equal(rows(r.result), [["2", "2"], ["3", "1"]]);
});

test("a schema change through ExecuteOnAll or Execute makes the router read the table's columns afresh", async () => {
  const [a] = await misplacedKeys(1);
  assert.equal((await t.grpc.execute({ sql: `select * from things where id = '0${a}'` })).shards, [await shardOf(a)]);
  // Recreated with a text key: '0…' is now a key of its own, placed as written.
  await t.grpc.executeOnAll({ sql: "drop table things" });
  await t.grpc.executeOnAll({ sql: "create table things (id text primary key, v text, grp text)" });
  assert.equal((await t.grpc.execute({ sql: `select * from things where id = '0${a}'` })).shards, [await shardOf(`0${a}`)]);
  // Back to int8, through Execute (DDL goes to every shard).
  await t.grpc.execute({ sql: "drop table things" });
  await t.grpc.execute({ sql: "create table things (id int8 primary key, v text, grp text)" });
  assert.equal((await t.grpc.execute({ sql: `select * from things where id = '0${a}'` })).shards, [await shardOf(a)]);
});

test.run();
