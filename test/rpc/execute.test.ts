// RouterService.Execute against real shards: it goes where Explain says, merges what several shards
// answer as the statement asks (averages back in their place), writes on several shards atomically,
// refuses a write that pins no key unless allow_scatter_write is set, and replays a request_id.
import { Code } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import type { ResultSet, Value } from "../../gen/shardrouter/v1/value_pb.js";
import { failure } from "../harness/failure.js";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
const int = (value: bigint): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "int64Value", value } }) as Value;
const str = (value: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value } }) as Value;
/** Rows as plain arrays of the values' JSON-ish text. */
const rows = (r: ResultSet | undefined) => (r?.rows ?? []).map((row) => row.values.map((v) => (v.kind.case === undefined || v.kind.case === "nullValue" ? null : String(v.kind.value))));
const names = (r: ResultSet | undefined) => (r?.columns ?? []).map((c) => c.name);

const keys = Array.from({ length: 40 }, (_, i) => i + 1);
const balanceOf = (k: number) => (k * 37) % 11;

test.before(hook(async () => {
  // Three shards own keys; a fourth is a spare (configured, in no map yet).
  t = await startTestRouter({ shards: 4, spareShards: 1, tables: { sharded: { items: "id" }, reference: ["currencies"] } });
  await t.grpc.executeOnAll({ sql: "create table items (id int8 primary key, cur text not null, balance int8 not null check (balance >= 0))" });
  await t.grpc.executeOnAll({ sql: "create table currencies (code text primary key, name text not null)" });
  const values = keys.map((k, i) => `($${i * 3 + 1}, $${i * 3 + 2}, $${i * 3 + 3})`).join(", ");
  const params = keys.flatMap((k) => [int(BigInt(k)), str(k % 3 === 0 ? "EUR" : "USD"), int(BigInt(balanceOf(k)))]);
  const inserted = await t.grpc.execute({ sql: `insert into items (id, cur, balance) values ${values}`, params });
  assert.is(inserted.result?.rowsAffected, BigInt(keys.length));
  assert.is(inserted.shards.length, 3, "40 keys spread over the 3 shards");
  assert.ok(inserted.twoPhase, "a multi-shard INSERT commits in two phases");
  await t.grpc.execute({ sql: "insert into currencies (code, name) values ('EUR', 'Euro'), ('USD', 'US dollar')" });
}));
test.after(hook(async () => { await t?.stop(); }));

test("a pinned key runs on its shard only, as written", async () => {
  for (const k of [1, 7, 33]) {
    const route = await t.grpc.route({ key: String(k) });
    const r = await t.grpc.execute({ sql: "select id, balance from items where id = $1", params: [int(BigInt(k))] });
    assert.equal(r.shards, [route.shard]);
    assert.is(r.routing, `items.id = "${k}"`);
    assert.equal(rows(r.result), [[String(k), String(balanceOf(k))]]);
  }
});

test("every row lives on its key's shard only (the INSERT was split by rows)", async () => {
  for (const s of t.cluster.shards) {
    const ids = (await t.direct(s.nodes[0])`select id from items order by id`).map((r) => Number(r.id));
    const owned = [];
    for (const k of keys) if ((await t.grpc.route({ key: String(k) })).shard === s.name) owned.push(k);
    assert.equal(ids, owned, s.name);
  }
});

test("a read without key merges ORDER BY, LIMIT and OFFSET over every shard", async () => {
  const r = await t.grpc.execute({ sql: "select id, balance from items order by balance desc, id limit 5 offset 2" });
  const expected = [...keys].sort((a, b) => balanceOf(b) - balanceOf(a) || a - b).slice(2, 7);
  assert.equal(rows(r.result), expected.map((k) => [String(k), String(balanceOf(k))]));
  assert.is(r.shards.length, 3);
});

test("LIMIT and OFFSET up to bigint's bounds, as Postgres takes them, over several shards", async () => {
  const max = 9223372036854775807n;
  const p = await t.grpc.execute({ sql: "select id from items order by id limit $1 offset $2", params: [int(max), int(38n)] });
  assert.equal(rows(p.result), [["39"], ["40"]]);
  const c = await t.grpc.execute({ sql: "select id from items order by id limit 3000000000 offset 38" });
  assert.equal(rows(c.result), [["39"], ["40"]]);
  const o = await t.grpc.execute({ sql: "select id from items order by id offset 3000000000" });
  assert.equal(rows(o.result), []);
  assert.is(o.shards.length, 3);
});

test("avg comes back where the SELECT list put it, with no helper columns", async () => {
  const r = await t.grpc.execute({ sql: "select cur, avg(balance) as mean, count(*) as n from items group by cur order by cur" });
  assert.equal(names(r.result), ["cur", "mean", "n"]);
  for (const [cur, mean, n] of rows(r.result)) {
    const mine = keys.filter((k) => (k % 3 === 0 ? "EUR" : "USD") === cur);
    assert.is(n, String(mine.length));
    const sum = mine.reduce((s, k) => s + balanceOf(k), 0);
    assert.is(Number(mean).toFixed(10), (sum / mine.length).toFixed(10), `${cur}: ${mean}`);
  }
});

test("a join with a reference table runs on each shard and merges", async () => {
  const r = await t.grpc.execute({ sql: "select c.name, count(*) as n from items i join currencies c on c.code = i.cur group by c.name order by n desc" });
  assert.equal(rows(r.result), [["US dollar", String(keys.filter((k) => k % 3 !== 0).length)], ["Euro", String(keys.filter((k) => k % 3 === 0).length)]]);
  const one = await t.grpc.execute({ sql: "select name from currencies order by code" });
  assert.is(one.shards.length, 1, "reference tables are read on one shard");
  assert.equal(rows(one.result), [["Euro"], ["US dollar"]]);
});

test("a reference-table write reaches every shard atomically, the spare too", async () => {
  const r = await t.grpc.execute({ sql: "insert into currencies (code, name) values ($1, $2)", params: [str("JPY"), str("Yen")] });
  assert.is(r.shards.length, 4);
  assert.ok(r.twoPhase);
  assert.is(r.result?.rowsAffected, 1n, "a copy on every shard is still one row");
  for (const s of t.cluster.shards) {
    const got = await t.direct(s.nodes[0])`select name from currencies where code = 'JPY'`;
    assert.equal(got.map((x) => x.name), ["Yen"], s.name);
  }
  const dup = await failure(t.grpc.execute({ sql: "insert into currencies (code, name) values ('JPY', 'again')" }));
  assert.is(dup.code, Code.AlreadyExists);
  for (const s of t.cluster.shards) {
    const got = await t.direct(s.nodes[0])`select count(*)::int as n from currencies where code = 'JPY'`;
    assert.is(got[0].n, 1, s.name);
  }
});

test("a reference-table write that reads a sharded table is refused: each copy would change by its shard's rows", async () => {
  const e = await failure(t.grpc.execute({ sql: "update currencies set name = name || '!' from items where items.id = 1 and currencies.code = items.cur" }));
  assert.is(e.code, Code.InvalidArgument, e.rawMessage);
  assert.match(e.rawMessage, "reference table currencies");
  const d = await failure(t.grpc.execute({ sql: "delete from currencies using items where items.id = 2 and currencies.code = items.cur" }));
  assert.is(d.code, Code.InvalidArgument, d.rawMessage);
  const cte = await failure(t.grpc.execute({ sql: "with c as (update currencies set name = 'x' returning code) select id from items where id = 1" }));
  assert.is(cte.code, Code.InvalidArgument, cte.rawMessage);
  assert.match(cte.rawMessage, "reference table currencies");
  for (const s of t.cluster.shards) {
    const got = await t.direct(s.nodes[0])`select code, name from currencies where code in ('EUR', 'USD') order by code`;
    assert.equal(got.map((x) => x.name), ["Euro", "US dollar"], s.name);
  }
});

test("a SELECT that writes only copies (a CTE writing a reference table, a user function) answers once", async () => {
  const ins = await t.grpc.execute({ sql: "with d as (insert into currencies (code, name) values ('GBP', 'Pound') returning code) select code from d" });
  assert.is(ins.shards.length, 4);
  assert.equal(rows(ins.result), [["GBP"]]);
  assert.is(ins.result?.rowsAffected, 1n);
  const avg = await t.grpc.execute({ sql: "with d as (delete from currencies where code = 'GBP' returning length(name) as l) select avg(l) as a, count(*) as n from d" });
  assert.equal(names(avg.result), ["a", "n"]);
  assert.equal(rows(avg.result).map(([a, n]) => [Number(a), n]), [[5, "1"]]);
  for (const s of t.cluster.shards) assert.is((await t.direct(s.nodes[0])`select 1 from currencies where code = 'GBP'`).length, 0, s.name);
  await t.grpc.executeOnAll({ sql: "create function review_one() returns int language sql volatile as 'select 1'" });
  const f = await t.grpc.execute({ sql: "select review_one() as one" });
  assert.equal(rows(f.result), [["1"]]);
});

test("UPDATE without a key is refused unless allow_scatter_write; then every shard, atomically", async () => {
  const refused = await failure(t.grpc.execute({ sql: "update items set balance = balance + 1" }));
  assert.is(refused.code, Code.InvalidArgument);
  assert.match(refused.rawMessage, "allow_scatter_write");
  const ok = await t.grpc.execute({ sql: "update items set balance = balance + 1", allowScatterWrite: true });
  assert.is(ok.result?.rowsAffected, BigInt(keys.length));
  assert.equal(ok.shards, t.cluster.shards.slice(0, 3).map((s) => s.name), "rows live on the map's shards: the spare gets no DML");
  // One shard's row violates the CHECK: nothing changes anywhere.
  const before = rows((await t.grpc.execute({ sql: "select sum(balance) as s from items" })).result);
  const failed = await failure(t.grpc.execute({ sql: "update items set balance = balance - 2", allowScatterWrite: true }));
  assert.is(failed.code, Code.FailedPrecondition, failed.rawMessage);
  assert.equal(rows((await t.grpc.execute({ sql: "select sum(balance) as s from items" })).result), before);
  await t.grpc.execute({ sql: "update items set balance = balance - 1", allowScatterWrite: true });
});

test("a SELECT calling a function the router cannot read, over every shard, asks for allow_scatter_write; then it runs atomically and merges", async () => {
  await t.grpc.executeOnAll({ sql: "create function touched(x int8) returns int8 language plpgsql as $$ begin return x; end $$" });
  const sql = "select touched(id) as id from items order by id limit 3";
  const refused = await failure(t.grpc.execute({ sql }));
  assert.is(refused.code, Code.InvalidArgument);
  assert.match(refused.rawMessage, "a SELECT that may write (it calls a function the router cannot read) of items pins no shard key");
  const ran = await t.grpc.execute({ sql, allowScatterWrite: true });
  assert.equal(rows(ran.result), [["1"], ["2"], ["3"]]);
  assert.ok(ran.twoPhase, "every shard's part committed together");
  const pinned = await t.grpc.execute({ sql: "select touched(id) as id from items where id = 5" });
  assert.equal(rows(pinned.result), [["5"]], "a pinned one needs no flag");
});

test("a write with a request_id is applied once; a retry gets the stored answer", async () => {
  const req = { sql: "insert into items (id, cur, balance) values (101, 'USD', 1), (102, 'USD', 2), (103, 'USD', 3) returning id", requestId: "exec-once-1" };
  const first = await t.grpc.execute(req);
  const again = await t.grpc.execute(req);
  assert.ok(again.replayed);
  assert.equal(rows(again.result), rows(first.result));
  assert.equal(rows(first.result).map((r) => r[0]).sort(), ["101", "102", "103"]);
  // The record is kept under the least key (101): the same id with other content is refused.
  const other = await failure(t.grpc.execute({ ...req, sql: "insert into items (id, cur, balance) values (101, 'USD', 9), (104, 'USD', 1)" }));
  assert.is(other.code, Code.FailedPrecondition, other.rawMessage);
  assert.match(other.rawMessage, "already used for a different request");
  await t.grpc.execute({ sql: "delete from items where id in (101, 102, 103)" });
});

test("what cannot be answered across shards is invalid_argument naming it", async () => {
  const e = await failure(t.grpc.execute({ sql: "select count(distinct cur) from items" }));
  assert.is(e.code, Code.InvalidArgument);
  assert.match(e.rawMessage, "count(DISTINCT …)");
  const pinned = await t.grpc.execute({ sql: "select count(distinct cur) as n from items where id = 3" });
  assert.equal(rows(pinned.result), [["1"]]);
});

test("ExecuteOnAll with merge.auto derives the merge as Execute does", async () => {
  const auto = await t.grpc.executeOnAll({ sql: "select cur, avg(balance) as mean from items group by cur order by cur", merge: { auto: true } });
  const exec = await t.grpc.execute({ sql: "select cur, avg(balance) as mean from items group by cur order by cur" });
  assert.equal(names(auto.result), ["cur", "mean"]);
  assert.equal(rows(auto.result), rows(exec.result));
  const mixed = await failure(t.grpc.executeOnAll({ sql: "select id from items", merge: { auto: true, limit: 1n } }));
  assert.is(mixed.code, Code.InvalidArgument);
});

test.run();
