// RouterService.Explain against a real router: the shards it names are the ones Route gives for the
// same keys, the merge and each shard's statement come back, refusals are invalid_argument naming the
// construct, and nothing runs on any shard.
import { Code } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import { AggregateFunction } from "../../gen/shardrouter/v1/router_pb.js";
import type { ResultSet, Value } from "../../gen/shardrouter/v1/value_pb.js";
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
  await t.grpc.executeOnAll({ sql: "create table if not exists currencies (code text primary key)" });
  await t.grpc.explain({ sql: "insert into currencies (code) values ('XXX')" });
  for (const s of t.cluster.shards) {
    const [{ n }] = await t.direct(s.nodes[0])`select count(*)::int as n from currencies where code = 'XXX'`;
    assert.is(n, 0, s.name);
  }
});

const arr = (...keys: bigint[]): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "arrayValue", value: { $typeName: "shardrouter.v1.ValueList", values: keys.map(int) } } }) as Value;
const cells = (r: ResultSet | undefined) => (r?.rows ?? []).map((row) => row.values.map((v) => (v.kind.case === undefined || v.kind.case === "nullValue" ? null : String(v.kind.value))));
const accountKeys = Array.from({ length: 12 }, (_, i) => BigInt(i + 1));
const ordersOf = (k: bigint) => Array.from({ length: Number(k % 3n) + 1 }, (_, j) => BigInt(j + 1)); // totals 1…n
let ownerOf: Map<bigint, string>;

test("(rows for what follows: accounts 1…12 and their orders, each on its key's shard)", async () => {
  await t.grpc.executeOnAll({ sql: "create table accounts (id int8 primary key, balance int8 not null)" });
  await t.grpc.executeOnAll({ sql: "create table orders (account_id int8 not null, total int8 not null)" });
  await t.grpc.execute({ sql: `insert into accounts (id, balance) values ${accountKeys.map((k) => `(${k}, ${k * 10n})`).join(", ")}` });
  await t.grpc.execute({ sql: `insert into orders (account_id, total) values ${accountKeys.flatMap((k) => ordersOf(k).map((n) => `(${k}, ${n})`)).join(", ")}` });
  ownerOf = new Map(await Promise.all(accountKeys.map(async (k) => [k, (await t.grpc.route({ key: String(k) })).shard] as const)));
  assert.is(new Set(ownerOf.values()).size, 3, "12 keys over 3 shards");
});

/** Two keys on two different shards, and a key on neither of them's shard. */
function spreadKeys(): [bigint, bigint, bigint] {
  const a = accountKeys[0];
  const b = accountKeys.find((k) => ownerOf.get(k) !== ownerOf.get(a))!;
  const c = accountKeys.find((k) => ownerOf.get(k) !== ownerOf.get(a) && ownerOf.get(k) !== ownerOf.get(b))!;
  return [a, b, c];
}

test("id = ANY($1) with keys on two shards reaches exactly those two; Explain says ANY and lists the keys; Execute answers from them", async () => {
  const [a, b] = spreadKeys();
  const sql = "select id, balance from accounts where id = any($1) order by id";
  const topology = await t.grpc.getTopology({});
  const expected = topology.shards.map((s) => s.name).filter((s) => s === ownerOf.get(a) || s === ownerOf.get(b));
  const e = await t.grpc.explain({ sql, params: [arr(a, b)] });
  assert.equal(e.shards, expected);
  assert.is(e.routing, `accounts.id = ANY ("${a}", "${b}")`);
  assert.equal(e.tables.map((x) => [x.name, x.keyValues]), [["accounts", [String(a), String(b)]]]);
  assert.equal(e.statements.map((s) => s.shard), expected);
  const r = await t.grpc.execute({ sql, params: [arr(a, b)] });
  assert.equal(r.shards, expected);
  assert.equal(cells(r.result), [a, b].sort((x, y) => Number(x - y)).map((k) => [String(k), String(k * 10n)]));
  // A literal array and ARRAY[…] pin the same way; a NULL element matches nothing.
  const literal = await t.connect.explain({ sql: `select * from accounts where id = any('{${a},NULL}')` });
  assert.equal(literal.shards, [ownerOf.get(a)!]);
  assert.equal(literal.tables[0].keyValues, [String(a), "NULL"]);
  const array = await t.grpc.execute({ sql: "select id from accounts where id = any(array[$1::int8, $2::int8])", params: [int(b), int(b)] });
  assert.equal([array.shards, cells(array.result)], [[ownerOf.get(b)!], [[String(b)]]]);
});

test("id = ANY($1) given no array is invalid_argument naming the parameter", async () => {
  const err = await failure(t.grpc.explain({ sql: "select * from accounts where id = any($1)", params: [int(1n)] }));
  assert.is(err.code, Code.InvalidArgument);
  assert.match(err.rawMessage, "parameter $1 is compared as accounts.id = ANY($1): it must be an array");
});

test("a subquery pinned to the statement's key runs on its shard; on another shard's key or without a key it is refused", async () => {
  const [a, b] = spreadKeys();
  const sql = "select id, balance from accounts where id = $1 and balance >= (select max(balance) from accounts a2 where a2.id = $2)";
  const e = await t.grpc.explain({ sql, params: [int(a), int(a)] });
  assert.equal(e.shards, [ownerOf.get(a)!]);
  assert.is(e.routing, `accounts.id = "${a}"; subquery accounts.id = "${a}"`);
  const r = await t.grpc.execute({ sql, params: [int(a), int(a)] });
  assert.equal(cells(r.result), [[String(a), String(a * 10n)]]);
  // b's row is on another shard: there the subquery would find nothing (and the answer be empty).
  const other = await failure(t.grpc.execute({ sql, params: [int(a), int(b)] }));
  assert.is(other.code, Code.InvalidArgument);
  assert.match(other.rawMessage, `a subquery or CTE reading accounts.id = "${b}" (on ${ownerOf.get(b)}) in a statement that runs on ${ownerOf.get(a)}`);
  const unpinned = await failure(t.grpc.explain({ sql: "select * from accounts where id = $1 and balance >= (select avg(balance) from accounts)", params: [int(a)] }));
  assert.is(unpinned.code, Code.InvalidArgument);
  assert.match(unpinned.rawMessage, "a subquery or CTE reading the sharded table accounts without its shard key");
  // An UPDATE whose EXISTS reads its own key: one shard, and it applies.
  const updated = await t.grpc.execute({ sql: "update accounts set balance = balance where id = $1 and exists (select 1 from accounts where id = $1)", params: [int(b)] });
  assert.equal([updated.shards, updated.result?.rowsAffected], [[ownerOf.get(b)!], 1n]);
});

test("a CTE pinned to a key moves the statement to that key's shard (not the first)", async () => {
  const topology = await t.grpc.getTopology({});
  const k = accountKeys.find((x) => ownerOf.get(x) !== topology.shards[0].name)!;
  const sql = "with x as (select * from accounts where id = $1) select id, balance from x";
  const e = await t.grpc.explain({ sql, params: [int(k)] });
  assert.equal(e.shards, [ownerOf.get(k)!]);
  const r = await t.grpc.execute({ sql, params: [int(k)] });
  assert.equal(cells(r.result), [[String(k), String(k * 10n)]]);
});

test("a subquery joined on the key to the outer row: every shard answers its own rows", async () => {
  const r = await t.grpc.execute({ sql: "select a.id, (select sum(total) from orders o where o.account_id = a.id) as spent from accounts a order by a.id" });
  assert.is(r.shards.length, 3);
  assert.match(r.routing, "subquery orders joined on o.account_id = a.id");
  assert.equal(cells(r.result), accountKeys.map((k) => [String(k), String(ordersOf(k).reduce((x, y) => x + y, 0n))]));
});

test("a sequence for a sharded table's key is refused, pointing to NextIds", async () => {
  const err = await failure(t.grpc.explain({ sql: "insert into accounts (id, balance) values (nextval('accounts_id_seq'), 0)" }));
  assert.is(err.code, Code.InvalidArgument);
  assert.match(err.rawMessage, "a sequence counts on each shard alone");
  assert.match(err.rawMessage, "NextIds; router.nextId() or router.nextIds(n) in the SDK");
});

test.run();
