// RouterService.Explain against a real router: the shards it names are the ones Route gives for the
// same keys, the merge and each shard's statement come back, refusals are invalid_argument naming the
// construct, and nothing runs on any shard.
import { Code } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import { AggregateFunction } from "../../gen/shardrouter/v1/router_pb.js";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import { failure } from "../harness/failure.js";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
const int = (value: bigint): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "int64Value", value } }) as Value;

test.before(hook(async () => {
  t = await startTestRouter({ shards: 3, tables: { sharded: { accounts: "id", orders: "account_id" }, reference: ["currencies"] } });
}));
test.after(hook(async () => { await t?.stop(); }));

test("a pinned key goes where Route says, with the table, key and values reported", async () => {
  for (const key of ["1", "2", "3", "42", "1000"]) {
    const route = await t.grpc.route({ key });
    const e = await t.grpc.explain({ sql: "select * from accounts where id = $1", params: [int(BigInt(key))] });
    assert.equal(e.shards, [route.shard], key);
    assert.is(e.routing, `accounts.id = "${key}"`);
    assert.equal(e.tables.map((x) => [x.name, x.role, x.keyColumn, x.keyValues]), [["accounts", "sharded", "id", [key]]]);
    assert.equal(e.statements.map((s) => [s.shard, s.sql, s.paramNumbers]), [[route.shard, "select * from accounts where id = $1", [1]]]);
    assert.is(e.merge, undefined);
    assert.is(e.shardMapVersion, route.shardMapVersion);
    assert.is(e.statementKind, "SelectStmt");
  }
});

test("IN and multi-row INSERT reach exactly the owners Route names; each shard gets its own rows", async () => {
  const keys = ["5", "6", "7", "8", "9", "10"];
  const owners = await Promise.all(keys.map(async (k) => (await t.grpc.route({ key: k })).shard));
  const e = await t.connect.explain({ sql: `select id from accounts where id in (${keys.join(", ")}) order by id desc` });
  assert.equal(new Set(e.shards), new Set(owners));
  assert.equal(e.merge?.orderBy.map((o) => [o.column, o.descending]), [["id", true]]);
  const insert = await t.grpc.explain({ sql: `insert into accounts (id, balance) values ${keys.map((k) => `(${k}, 0)`).join(", ")}` });
  assert.equal(new Set(insert.shards), new Set(owners));
  for (const s of insert.statements) {
    const mine = keys.filter((_, i) => owners[i] === s.shard);
    assert.is(s.sql, `insert into accounts (id, balance) values ${mine.map((k) => `(${k}, 0)`).join(", ")}`, s.shard);
  }
});

test("no key: every shard of the map, with the merge derived from the statement", async () => {
  const topology = await t.grpc.getTopology({});
  const e = await t.grpc.explain({ sql: "select currency, avg(balance) as mean from accounts group by currency order by mean limit 5" });
  assert.equal(e.shards, topology.shards.map((s) => s.name));
  assert.match(e.routing, "no shard key in WHERE");
  assert.equal(e.merge?.groupBy, ["currency"]);
  assert.equal(e.merge?.aggregates.map((a) => [a.column, a.function, a.sumColumn, a.countColumn]), [["mean", AggregateFunction.AVG, "mean__sum", "mean__count"]]);
  assert.is(e.merge?.limit, 5n);
  assert.match(e.mergeDescription, "re-aggregating avg");
  for (const s of e.statements) assert.is(s.sql, `select currency, sum(balance) AS "mean__sum", count(balance) AS "mean__count" from accounts group by currency limit ALL`);
});

test("refusals are invalid_argument naming the construct and the alternative; syntax errors keep their SQLSTATE", async () => {
  const distinct = await failure(t.grpc.explain({ sql: "select count(distinct balance) from accounts" }));
  assert.is(distinct.code, Code.InvalidArgument);
  assert.match(distinct.rawMessage, "count(DISTINCT …) cannot be answered across shards: pin the shard key");
  const join = await failure(t.grpc.explain({ sql: "select * from accounts a join orders o on o.note = a.name" }));
  assert.is(join.code, Code.InvalidArgument);
  assert.match(join.rawMessage, "not on their shard keys");
  const syntax = await failure(t.grpc.explain({ sql: "selec 1" }));
  assert.is(syntax.code, Code.InvalidArgument);
  assert.match(syntax.rawMessage, "42601");
  const session = await failure(t.grpc.explain({ sql: "set work_mem = '1GB'" }));
  assert.is(session.code, Code.InvalidArgument);
});

test("Explain runs nothing: an INSERT it explains leaves no row", async () => {
  await t.grpc.executeOnAll({ sql: "create table if not exists explained (id int8 primary key)" });
  await t.grpc.explain({ sql: "insert into explained (id) values (1)" });
  for (const s of t.cluster.shards) {
    const [{ n }] = await t.direct(s.nodes[0])`select count(*)::int as n from explained`;
    assert.is(n, 0, s.name);
  }
});

test.run();
