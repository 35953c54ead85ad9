// The SQL analysis (server/sql-planning): which shards a statement reaches and why, the merge derived
// from it, the text each shard gets, and the refusals, over many statement shapes.
import { Code, ConnectError } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import { AggregateFunction, NullsOrder } from "../../gen/shardrouter/v1/router_pb.js";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import { PlacementConfigSchema } from "../../server/placement/placement-config.js";
import { buildShardMap } from "../../server/placement/shard-map.js";
import { loadParser } from "../../server/sql/parser.js";
import { type Explanation, StatementPlanner } from "../../server/sql-planning/statement-plan.js";
import { test } from "../harness/uvu.js";

await loadParser();

const names = ["s0", "s1", "s2", "s3"];
const map = buildShardMap(PlacementConfigSchema.parse({ strategy: "hash_ring" }), names.map((name) => ({ name, weight: 1 })));
const owner = (key: string) => (map.strategy.place(key) as { shard: string }).shard;
const tables = { sharded: { accounts: "id", orders: "account_id", Weird: "Key" }, reference: ["currencies"] };
const planner = new StatementPlanner(tables);
const every = () => names;
const int = (v: bigint): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "int64Value", value: v } }) as Value;
const str = (v: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value: v } }) as Value;
const ordered = (shards: string[]) => names.filter((n) => shards.includes(n));

/** Keys 0…n on pairwise different shards (as many as there are). */
function keysOnDifferentShards(count: number): string[] {
  const seen = new Map<string, string>();
  for (let i = 1; seen.size < count; i++) if (![...seen.values()].includes(owner(String(i)))) seen.set(String(i), owner(String(i)));
  return [...seen.keys()];
}
const [k1, k2, k3] = keysOnDifferentShards(3);

const explain = (sql: string, params: Value[] = []): Promise<Explanation> => planner.explain(sql, params, map, every);

async function refused(sql: string, params: Value[] = []): Promise<string> {
  try {
    await explain(sql, params);
  } catch (err) {
    assert.instance(err, ConnectError);
    assert.is((err as ConnectError).code, Code.InvalidArgument, sql);
    return (err as ConnectError).rawMessage;
  }
  throw new Error(`expected ${JSON.stringify(sql)} to be refused`);
}

test("key = constant, = $n, and $n = key pin one shard; the statement goes as written", async () => {
  for (const [sql, params] of [
    [`select * from accounts where id = ${k1}`, []],
    ["select * from accounts where id = $1", [int(BigInt(k1))]],
    ["select * from accounts where $1::int8 = id and balance > 0", [int(BigInt(k1))]],
    ["select * from accounts where id = $1", [str(k1)]],
  ] as [string, Value[]][]) {
    const e = await explain(sql, params);
    assert.equal(e.decision.shards, [owner(k1)], sql);
    assert.is(e.reason, `accounts.id = "${k1}"`);
    assert.equal(e.statements, [{ shard: owner(k1), sql, params: params.map((_, i) => i + 1) }]);
    assert.is(e.merge, undefined);
  }
});

test("key IN (…) reaches the owners of its keys, in shard map order; a key from another param too", async () => {
  const e = await explain(`select * from accounts where id in (${k1}, $1, ${k3})`, [int(BigInt(k2))]);
  assert.equal(e.decision.shards, ordered([owner(k1), owner(k2), owner(k3)]));
  assert.equal(e.decision.keys[0].values, [k1, k2, k3]);
  assert.is(e.statements.length, 3);
  const same = await explain(`select * from accounts where id in (${k1}, ${k1})`);
  assert.equal(same.decision.shards, [owner(k1)]);
});

test("no key in WHERE, OR of keys, NOT IN, a key compared with <: every shard, and saying so", async () => {
  for (const sql of ["select * from accounts", "select * from accounts where id = 1 or id = 2", "select * from accounts where id not in (1)",
    "select * from accounts where id < 10", "select * from accounts where balance = 5"]) {
    const e = await explain(sql);
    assert.equal(e.decision.shards, names, sql);
    assert.match(e.reason, "no shard key in WHERE", sql);
  }
});

test("quoted identifiers and table aliases resolve as PostgreSQL does", async () => {
  assert.equal((await explain(`select * from "accounts" a where a."id" = ${k1}`)).decision.shards, [owner(k1)]);
  assert.equal((await explain(`select * from "Weird" w where w."Key" = ${k1}`)).decision.shards, [owner(k1)]);
  // Weird (unquoted) folds to weird, which is not the configured "Weird": unknown, so refused.
  const folded = await explain(`select * from Weird where "Key" = ${k1}`).then(() => undefined, (e: Error) => e);
  assert.match(folded?.message ?? "", "the table weird, not in the tables config");
  // An alias's column: b.id is not a key when b is another table's alias.
  assert.equal((await explain(`select * from accounts a, currencies b where b.id = ${k1}`)).decision.shards, names);
  // ID unquoted folds to id: the key.
  assert.equal((await explain(`select * from accounts where ID = ${k1}`)).decision.shards, [owner(k1)]);
});

test("INSERT VALUES: one row to its shard; rows on several shards split, parameters renumbered", async () => {
  const one = await explain("insert into accounts (id, balance) values ($1, $2)", [int(BigInt(k1)), int(5n)]);
  assert.equal(one.decision.shards, [owner(k1)]);
  assert.equal(one.statements, [{ shard: owner(k1), sql: "insert into accounts (id, balance) values ($1, $2)", params: [1, 2] }]);

  const sql = `insert into accounts (balance, id) values ($1, $2), (7, ${k2}), ($3, $4) returning id, $5::text as tag`;
  const e = await explain(sql, [int(1n), int(BigInt(k1)), int(3n), int(BigInt(k3)), str("t")]);
  assert.equal(e.decision.shards, ordered([owner(k1), owner(k2), owner(k3)]));
  assert.equal(e.decision.rowShards, [owner(k1), owner(k2), owner(k3)]);
  const by = new Map(e.statements.map((s) => [s.shard, s]));
  assert.equal(by.get(owner(k1)), { shard: owner(k1), sql: "insert into accounts (balance, id) values ($1, $2) returning id, $3::text as tag", params: [1, 2, 5] });
  assert.equal(by.get(owner(k2)), { shard: owner(k2), sql: `insert into accounts (balance, id) values (7, ${k2}) returning id, $1::text as tag`, params: [5] });
  assert.equal(by.get(owner(k3)), { shard: owner(k3), sql: "insert into accounts (balance, id) values ($1, $2) returning id, $3::text as tag", params: [3, 4, 5] });
  assert.match(e.mergeDescription, "concatenate");
});

test("INSERT refusals: no key column, a key expression, INSERT … SELECT, a NULL key", async () => {
  assert.match(await refused("insert into accounts (balance) values (1)"), "without id in its column list");
  assert.match(await refused("insert into accounts (id) values (nextval('s'))"), "is DEFAULT or a sequence's nextval()");
  assert.match(await refused("insert into accounts (id) values (lower('x'))"), "is an expression");
  assert.match(await refused("insert into accounts (id) select id from currencies"), "INSERT … SELECT");
  assert.match(await refused("insert into accounts (id) values ($1)", [{ $typeName: "shardrouter.v1.Value", kind: { case: "nullValue", value: 0 } } as Value]), "NULL shard key");
});

test("joins: a sharded table with itself or another on the key is co-located; not on the key, refused", async () => {
  const self = await explain(`select * from accounts a join accounts b on a.id = b.id where b.id = ${k1}`);
  assert.equal(self.decision.shards, [owner(k1)]);
  const colocated = await explain(`select * from accounts a join orders o on o.account_id = a.id where a.id = ${k1}`);
  assert.equal(colocated.decision.shards, [owner(k1)]);
  const all = await explain("select * from accounts a join accounts b using (id)");
  assert.equal(all.decision.shards, names, "every shard: co-located, not pinned");
  const everywhere = await explain("select a.id, o.total from accounts a left join orders o on o.account_id = a.id order by a.id");
  assert.equal(everywhere.decision.shards, names);
  assert.match(await refused("select * from accounts a join accounts b on a.name = b.name"), "a join of the sharded tables a and b not on their shard keys");
  assert.match(await refused(`select * from accounts a join orders o on o.note = a.name where a.id = ${k1}`), "not on their shard keys");
  // Both sides pinned to keys on one shard: that shard holds every row either side needs.
  const pinned = await explain(`select * from accounts a, accounts b where a.id = ${k1} and b.id = ${k1}`);
  assert.equal(pinned.decision.shards, [owner(k1)]);
  // A key pinned only in an outer join's ON restricts nothing.
  assert.equal((await explain(`select * from accounts a left join orders o on o.account_id = a.id and o.account_id = ${k1}`)).decision.shards, names);
});

test("reference tables: joined to a sharded table they follow its routing; alone a read needs one shard, a write all", async () => {
  const joined = await explain(`select * from accounts a join currencies c on c.code = a.currency where a.id = ${k1}`);
  assert.equal(joined.decision.shards, [owner(k1)]);
  const read = await explain("select * from currencies");
  assert.equal(read.decision.shards, ["s0"]);
  assert.match(read.reason, "reference tables only");
  const write = await explain("update currencies set rate = 2");
  assert.equal(write.decision.shards, names);
  assert.match(write.reason, "writes reference tables");
  const roles = await explain("select * from currencies, accounts, other").then(() => undefined, (e: Error) => e);
  assert.match(roles?.message ?? "", "the table other, not in the tables config");
});

test("ORDER BY: output names, aliases of expressions, positions, the same expression; NULLS FIRST/LAST; DESC", async () => {
  const e = await explain("select id, balance * 2 as double, name from accounts order by double desc nulls last, 3 nulls first, accounts.id, balance * 2");
  assert.equal(e.merge!.orderBy.map((o) => [o.column, o.descending, o.nulls]), [
    ["double", true, NullsOrder.LAST], ["name", false, NullsOrder.FIRST], ["id", false, NullsOrder.UNSPECIFIED], ["double", false, NullsOrder.UNSPECIFIED],
  ]);
  assert.match(e.mergeDescription, `merge-sort the shards' sorted rows by "double" DESC NULLS LAST, "name" ASC NULLS FIRST`);
  assert.is(e.statements[0].sql, "select id, balance * 2 as double, name from accounts order by double desc nulls last, 3 nulls first, accounts.id, balance * 2");
  const star = await explain("select * from accounts order by balance desc");
  assert.equal(star.merge!.orderBy.map((o) => o.column), ["balance"]);
  assert.match(await refused("select id from accounts order by balance + 1"), "ORDER BY an expression that is not in the select list");
  assert.match(await refused("select * from accounts order by 2"), "ORDER BY 2 after SELECT *");
  assert.match(await refused("select a.id, b.id from accounts a join accounts b on a.id = b.id order by id"), "a name two output columns share");
});

test("LIMIT/OFFSET: applied after the merge, each shard asked for LIMIT limit+offset; parameters resolved per call", async () => {
  const e = await explain("select id from accounts order by id limit 10 offset 5");
  assert.is(e.merge!.limit, 10n);
  assert.is(e.merge!.offset, 5n);
  assert.is(e.statements[0].sql, "select id from accounts order by id limit 15 offset 0");
  assert.match(e.mergeDescription, "each shard asked for LIMIT 15");
  const p = await explain("select id from accounts order by id limit $1 offset $2", [int(3n), int(4n)]);
  assert.is(p.merge!.limit, 3n);
  assert.is(p.merge!.offset, 4n);
  assert.is(p.statements[0].sql, "select id from accounts order by id limit least($1::int8::numeric + $2::int8, 9223372036854775807)::int8 offset 0");
  const onlyLimit = await explain("select id from accounts limit 3");
  assert.is(onlyLimit.statements[0].sql, "select id from accounts limit 3");
  const fetch = await explain("select id from accounts order by id offset 2 rows fetch first 3 rows only");
  assert.is(fetch.statements[0].sql, "select id from accounts order by id offset 0 rows fetch first 5 rows only");
  assert.match(await refused("select id from accounts limit 1 + 1"), "LIMIT with an expression");
  assert.match(await refused("select id from accounts order by id fetch first 3 rows with ties"), "WITH TIES");
});

test("GROUP BY with each aggregate: re-aggregated; avg asked as sum and count and divided after; ORDER BY/LIMIT not pushed down", async () => {
  const sql = "select currency, count(*) as n, sum(balance) as total, min(balance) as lo, max(balance) as hi, avg(balance) as mean from accounts group by currency order by mean desc limit 3";
  const e = await explain(sql);
  assert.equal(e.merge!.groupBy, ["currency"]);
  assert.equal(e.merge!.aggregates.map((a) => [a.column, a.function, a.sumColumn, a.countColumn]), [
    ["n", AggregateFunction.COUNT, "", ""], ["total", AggregateFunction.SUM, "", ""], ["lo", AggregateFunction.MIN, "", ""],
    ["hi", AggregateFunction.MAX, "", ""], ["mean", AggregateFunction.AVG, "mean__sum", "mean__count"],
  ]);
  assert.is(e.statements[0].sql,
    `select currency, count(*) as n, sum(balance) as total, min(balance) as lo, max(balance) as hi, sum(balance) AS "mean__sum", count(balance) AS "mean__count" from accounts group by currency limit ALL`);
  assert.equal(e.merge!.orderBy.map((o) => o.column), ["mean"]);
  assert.is(e.merge!.limit, 3n);
  assert.match(e.mergeDescription, "no LIMIT pushed down");
  // Without GROUP BY: one group; unaliased aggregates keep PostgreSQL's names.
  const whole = await explain("select count(*), avg ( balance ) from accounts");
  assert.equal(whole.merge!.groupBy, []);
  assert.equal(whole.merge!.aggregates.map((a) => a.column), ["count", "avg"]);
  assert.is(whole.statements[0].sql, `select count(*), sum( balance ) AS "avg__sum", count( balance ) AS "avg__count" from accounts`);
});

test("output columns carry the names PostgreSQL gives them: a cast its argument's or its type's, CASE its ELSE's, coalesce, a scalar subquery's column", async () => {
  const e = await explain(`select balance::text, cast(1 as int), case when true then 1 else id end, case when true then 1 end, coalesce(name, ''),
    greatest(1, 2), nullif(1, 2), (select code from currencies limit 1), exists (select 1 from currencies), array[1], current_date, balance + 1
    from accounts order by 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12`);
  assert.equal(e.merge!.orderBy.map((o) => o.column), [
    "balance", "int4", "id", "case", "coalesce", "greatest", "nullif", "code", "exists", "array", "current_date", "?column?",
  ]);
});

test("ORDER BY a position whose column shares its name is refused; ORDER BY a bare name means the output column of that name", async () => {
  assert.match(await refused("select balance + 1, id + 2 from accounts order by 2"), `ORDER BY "?column?", a name two output columns share`);
  const e = await explain("select cast(balance as text), balance as b from accounts order by balance");
  assert.equal(e.merge!.orderBy.map((o) => o.column), ["balance"], "the text column PostgreSQL names balance, not b");
  const qualified = await explain("select cast(balance as text), balance as b from accounts order by accounts.balance");
  assert.equal(qualified.merge!.orderBy.map((o) => o.column), ["b"]);
});

test("avg(x) FILTER (WHERE …): its sum and count take the FILTER; GROUP BY positions after an average point one further", async () => {
  const e = await explain("select currency, avg(balance) filter (where balance > 0) as m, avg(balance) filter (where true) from accounts group by currency");
  assert.is(e.statements[0].sql, `select currency, sum(balance) filter (where balance > 0) AS "m__sum", count(balance) filter (where balance > 0) AS "m__count", sum(balance) filter (where true) AS "avg__sum", count(balance) filter (where true) AS "avg__count" from accounts group by currency`);
  const positions = await explain("select avg(balance) as a, name, avg(id) as b, currency from accounts group by 2, 4");
  assert.is(positions.statements[0].sql, `select sum(balance) AS "a__sum", count(balance) AS "a__count", name, sum(id) AS "b__sum", count(id) AS "b__count", currency from accounts group by 3, 6`);
  assert.equal(positions.merge!.groupBy, ["name", "currency"]);
});

test("LIMIT/OFFSET the shards do without: FETCH FIRST takes NULL, an implied count its place, a parameter stays typed", async () => {
  const fetch = await explain("select currency, count(*) from accounts group by currency fetch first 3 rows only");
  assert.is(fetch.statements[0].sql, "select currency, count(*) from accounts group by currency fetch first NULL rows only");
  const row = await explain("select currency, count(*) from accounts group by currency fetch first row only");
  assert.is(row.statements[0].sql, "select currency, count(*) from accounts group by currency fetch first NULL row only");
  assert.is(row.merge!.limit, 1n);
  const implied = await explain("select id from accounts order by id offset 2 rows fetch next row only");
  assert.is(implied.statements[0].sql, "select id from accounts order by id offset 0 rows fetch next 3 row only");
  const params = await explain("select currency, count(*) from accounts group by currency limit $1 offset $2", [int(3n), int(1n)]);
  assert.is(params.statements[0].sql, "select currency, count(*) from accounts group by currency limit (NULL + $1::int8) offset (0 * $2::int8)");
  const offsetOnly = await explain("select id from accounts order by id offset $1", [int(3n)]);
  assert.is(offsetOnly.statements[0].sql, "select id from accounts order by id offset (0 * $1::int8)");
});

test("the text edits skip strings, quoted names and comments, and keep nested parentheses whole", async () => {
  const sql = `select "order", avg((balance + 1) * 2) "m(1)" from accounts /* order by */ where note <> 'order by x)' group by "order" order by "m(1)" -- order by
 limit 4`;
  const e = await explain(sql);
  assert.is(e.statements[0].sql, `select "order", sum((balance + 1) * 2) AS "m(1)__sum", count((balance + 1) * 2) AS "m(1)__count" from accounts /* order by */ where note <> 'order by x)' group by "order" limit ALL`);
  assert.equal(e.merge!.orderBy.map((o) => o.column), ["m(1)"]);
  assert.equal(e.merge!.groupBy, ["order"]);
});

test("grouping by the shard key is shard-local: nothing re-aggregated, count(DISTINCT) and HAVING allowed, LIMIT pushed down", async () => {
  const e = await explain("select id, count(distinct note) as n from accounts group by id having count(*) > 1 order by id limit 5 offset 1");
  assert.equal(e.merge!.groupBy, []);
  assert.equal(e.merge!.aggregates, []);
  assert.is(e.statements[0].sql, "select id, count(distinct note) as n from accounts group by id having count(*) > 1 order by id limit 6 offset 0");
  const distinct = await explain("select distinct id, name from accounts");
  assert.equal(distinct.merge!.groupBy, []);
});

test("DISTINCT: a GROUP BY of every output column", async () => {
  const e = await explain("select distinct name, currency from accounts order by name");
  assert.equal(e.merge!.groupBy, ["name", "currency"]);
  assert.equal(e.merge!.aggregates, []);
  assert.match(e.mergeDescription, "DISTINCT");
});

test("refusals name the construct and the alternative; a pinned statement is never refused for them", async () => {
  const cases: [string, string][] = [
    ["select count(distinct balance) from accounts", "count(DISTINCT …) cannot be answered across shards: pin the shard key"],
    ["select string_agg(name, ',') from accounts", "the aggregate string_agg()"],
    ["select id, rank() over (order by balance) from accounts", "a window function (OVER …)"],
    ["select currency, count(*) from accounts group by currency having count(*) > 1", "HAVING over groups of several shards"],
    ["select currency, count(*) * 2 as c from accounts group by currency", "an expression over an aggregate"],
    ["select distinct on (name) name, balance from accounts", "DISTINCT ON"],
    ["select currency, count(*) from accounts group by rollup (currency)", "GROUPING SETS, ROLLUP or CUBE"],
    ["select id from accounts union select id from orders", "UNION over a sharded table"],
    ["select * from currencies where code in (select currency from accounts)", "a subquery or CTE reading the sharded table accounts without its shard key"],
    ["update accounts set id = 5 where id = 4", "UPDATE of the shard key accounts.id"],
  ];
  for (const [sql, message] of cases) assert.match(await refused(sql), message, sql);
  // The same constructs pinned to one shard: that shard answers them whole.
  for (const sql of ["select count(distinct balance) from accounts where id = 1", "select id, rank() over (order by balance) from accounts where id in (1, 1)",
    "select string_agg(name, ',') from accounts where id = $1"]) {
    const e = await explain(sql, [int(1n)]);
    assert.is(e.decision.shards.length, 1, sql);
  }
  // A window partitioned by the key is shard-local.
  assert.is((await explain("select id, rank() over (partition by id order by balance) from accounts")).decision.shards.length, 4);
  // A subquery over a sharded table is refused even when pinned: its rows may be elsewhere.
  assert.match(await refused("select * from accounts where id = 1 and balance > (select avg(balance) from accounts)"), "subquery");
});

test("writes without a key reach every configured shard; DDL too", async () => {
  assert.equal((await explain("update accounts set balance = 0")).decision.shards, names);
  assert.equal((await explain(`delete from accounts where id = ${k2}`)).decision.shards, [owner(k2)]);
  const ddl = await explain("create table t (x int)");
  assert.equal(ddl.decision.shards, names);
  assert.match(ddl.reason, "a Create statement: every shard");
});

test("a table the config does not name is refused on several shards (split or copied, only the config says)", async () => {
  const blank = new StatementPlanner({ sharded: {}, reference: [] });
  for (const sql of ["select * from accounts where id = 1", "insert into accounts (id) values (1)", "select a.* from accounts a join currencies c on c.code = a.cur"]) {
    const e = await blank.explain(sql, [], map, every).then(() => undefined, (x: Error) => x);
    assert.ok(e instanceof ConnectError && e.code === Code.InvalidArgument, sql);
    assert.match(e.message, "not in the tables config", sql);
    assert.match(e.message, "add it to tables.sharded (with its key column) or to tables.reference", sql);
  }
  // With one shard there is nothing to split or copy: it runs there.
  const one = buildShardMap(PlacementConfigSchema.parse({ strategy: "hash_ring" }), [{ name: "s0", weight: 1 }]);
  assert.equal((await blank.explain("select * from accounts", [], one, () => ["s0"])).decision.shards, ["s0"]);
  // DDL names no table the config must know: every shard.
  assert.equal((await blank.explain("create table t (x int)", [], map, every)).decision.shards, names);
});

test("analyses are cached per text (bounded LRU); routing by params is per call", async () => {
  const small = new StatementPlanner(tables, 2);
  const a = small.analyze("select * from accounts where id = $1");
  assert.is(small.analyze("select * from accounts where id = $1"), a);
  small.analyze("select 1");
  small.analyze("select * from accounts where id = $1"); // touched: now the most recent
  small.analyze("select 2"); // evicts "select 1"
  assert.is(small.cachedStatements, 2);
  assert.is(small.analyze("select * from accounts where id = $1"), a);
  const r1 = small.route(a, [int(BigInt(k1))], map, every) as { shards: string[] };
  const r2 = small.route(a, [int(BigInt(k2))], map, every) as { shards: string[] };
  assert.equal([r1.shards, r2.shards], [[owner(k1)], [owner(k2)]]);
  assert.match(await refused("select * from accounts where id = $1"), "but 0 parameter(s) were given");
});

const arr = (...values: Value[]): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "arrayValue", value: { $typeName: "shardrouter.v1.ValueList", values } } }) as Value;
const nul = (): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "nullValue", value: 0 } }) as Value;
/** A key whose shard is not `shard`. */
const keyNotOn = (shard: string) => [k1, k2, k3].find((k) => owner(k) !== shard)!;

test("key = ANY(array): an array parameter, an array literal, ARRAY[…]: exactly the owners of its elements", async () => {
  const sql = "select * from accounts where id = any($1) order by id";
  const two = await explain(sql, [arr(int(BigInt(k1)), int(BigInt(k2)))]);
  assert.equal(two.decision.shards, ordered([owner(k1), owner(k2)]));
  assert.equal(two.decision.keys[0].values, [k1, k2]);
  assert.is(two.reason, `accounts.id = ANY ("${k1}", "${k2}")`);
  assert.equal(two.statements.map((s) => s.shard), ordered([owner(k1), owner(k2)]));
  assert.equal(two.merge!.orderBy.map((o) => o.column), ["id"]);
  // Per call: the same text with one key (a string, a nested array, a NULL element) reaches one shard.
  assert.equal((await explain(sql, [arr(str(k3))])).decision.shards, [owner(k3)]);
  assert.equal((await explain(sql, [arr(arr(int(BigInt(k1))), arr(nul()))])).decision.shards, [owner(k1)]);
  // ANY(NULL) and an empty array match no row: one shard answers (empty).
  for (const params of [[nul()], [arr()], [arr(nul())]]) assert.is((await explain(sql, params)).decision.shards.length, 1);
  const literal = await explain(`select * from accounts a where a.id = any('{${k1}, ${k3}, NULL}'::int8[])`);
  assert.equal(literal.decision.shards, ordered([owner(k1), owner(k3)]));
  assert.equal(literal.decision.keys[0].values, [k1, k3, null]);
  assert.equal((await explain(`select * from accounts where id = any('{"${k2}"}')`)).decision.shards, [owner(k2)]);
  const array = await explain(`select * from accounts where id = any(array[${k1}, $2]) and balance > $1`, [int(0n), int(BigInt(k2))]);
  assert.equal(array.decision.shards, ordered([owner(k1), owner(k2)]));
  assert.equal((await explain(`select * from accounts where id = any(array[[${k3}], [${k3}]])`)).decision.shards, [owner(k3)]);
  // In an inner join's ON, and pinning a co-located group.
  const joined = await explain("select * from accounts a join orders o on o.account_id = a.id and o.account_id = any($1)", [arr(int(BigInt(k2)))]);
  assert.equal(joined.decision.shards, [owner(k2)]);
  // Writes: the owners of the keys (the statement then commits on them together).
  assert.equal((await explain("delete from accounts where id = any($1)", [arr(int(BigInt(k1)), int(BigInt(k3)))])).decision.shards, ordered([owner(k1), owner(k3)]));
  // Not a pin: an array from a function, a subquery, a literal with backslash escapes, <> ALL.
  for (const other of ["select * from accounts where id = any(string_to_array($1, ','))", "select * from accounts where id <> all($1)",
    String.raw`select * from accounts where id = any('{a\,b}')`]) {
    assert.equal((await explain(other, [str("1")])).decision.shards, names, other);
  }
});

test("key = ANY($n) refuses a parameter that is no array, or an element that cannot be a key, naming the parameter", async () => {
  const sql = "select * from accounts where id = any($2) and balance > $1";
  const notArray = await refused(sql, [int(0n), str(`{${k1}}`)]);
  assert.match(notArray, "parameter $2 is compared as accounts.id = ANY($2): it must be an array (array_value) of keys, not a stringValue");
  const bytes: Value = { $typeName: "shardrouter.v1.Value", kind: { case: "bytesValue", value: new Uint8Array([1]) } } as Value;
  assert.match(await refused(sql, [int(0n), arr(int(1n), bytes)]), "parameter $2 is an array of shard keys (accounts.id = ANY($2)); an element that is a bytesValue cannot be a key");
  assert.match(await refused(sql, [int(0n)]), "uses $2 as an array of shard keys (accounts.id = ANY($2)), but 1 parameter(s) were given");
  // An array given where one key is expected is refused as before.
  assert.match(await refused("select * from accounts where id = $1", [arr(int(1n))]), "parameter $1 is a shard key; a arrayValue cannot be one");
});

test("the pinned hot path stays synchronous; ANY takes the general path, synchronous too on a hash map", () => {
  const point = planner.route(planner.analyze("select * from accounts where id = $1"), [int(BigInt(k1))], map, every);
  assert.not.instance(point, Promise);
  assert.equal((point as { shards: string[] }).shards, [owner(k1)]);
  const any = planner.route(planner.analyze("select * from accounts where id = any($1)"), [arr(int(BigInt(k1)))], map, every);
  assert.not.instance(any, Promise);
  assert.equal((any as { shards: string[] }).shards, [owner(k1)]);
});

test("a subquery, sublink or CTE pinned to the statement's shard runs there; per call", async () => {
  const scalar = "select * from accounts where id = $1 and balance >= (select max(balance) from accounts a2 where a2.id = $2)";
  const same = await explain(scalar, [int(BigInt(k1)), int(BigInt(k1))]);
  assert.equal(same.decision.shards, [owner(k1)]);
  assert.is(same.reason, `accounts.id = "${k1}"; subquery accounts.id = "${k1}"`);
  assert.equal(same.statements, [{ shard: owner(k1), sql: scalar, params: [1, 2] }]);
  // The same text with the subquery's key on another shard: refused, naming both shards.
  const other = await refused(scalar, [int(BigInt(k1)), int(BigInt(k2))]);
  assert.match(other, `a subquery or CTE reading accounts.id = "${k2}" (on ${owner(k2)}) in a statement that runs on ${owner(k1)} cannot be answered across shards`);
  assert.match(other, "pin it to a key of that shard, or run it as its own statement");
  // A NULL key in the subquery matches nothing on any shard: no constraint.
  assert.equal((await explain(scalar, [int(BigInt(k1)), nul()])).decision.shards, [owner(k1)]);
  // EXISTS in an UPDATE, IN (subquery), a derived table, ANY in the subquery.
  for (const sql of ["update accounts set balance = balance + 1 where id = $1 and exists (select 1 from accounts where id = $1)",
    "select * from accounts where id = $1 and currency in (select currency from accounts where id = $1)",
    "select * from (select * from accounts where id = $1) s join accounts b on b.id = $1",
    "delete from orders where account_id = $1 and total > (select avg(total) from orders where account_id = any(array[$1]))"]) {
    assert.equal((await explain(sql, [int(BigInt(k3))])).decision.shards, [owner(k3)], sql);
  }
  // The statement reaching several shards: a pinned subquery would see its rows on one of them only.
  assert.match(await refused(`select * from accounts where id in (${k1}, ${k2}) and exists (select 1 from accounts a2 where a2.id = ${k1})`),
    `in a statement that runs on 2 shards`);
  assert.match(await refused(`update currencies set rate = (select balance from accounts where id = ${k1})`), "in a statement that runs on 4 shards");
});

test("a statement that reads no sharded row itself goes to its subqueries' shard", async () => {
  const k = keyNotOn("s0");
  const cte = await explain(`with x as (select * from accounts where id = ${k}) select * from x`);
  assert.equal(cte.decision.shards, [owner(k)], "not the first shard: the CTE's rows are on the key's");
  assert.is(cte.reason, `subquery accounts.id = "${k}": the shard of those keys (the statement itself reads no sharded row)`);
  const ref = await explain("select * from currencies c where c.code in (select currency from accounts where id = any($1))", [arr(int(BigInt(k)))]);
  assert.equal(ref.decision.shards, [owner(k)]);
  assert.match(await refused("select * from currencies c where c.code in (select currency from accounts where id = any($1))", [arr(int(BigInt(k1)), int(BigInt(k2)))]),
    `subqueries or CTEs reading keys of several shards (accounts.id = ANY ("${k1}", "${k2}"): on ${ordered([owner(k1), owner(k2)]).join(" and ")})`);
  assert.match(await refused(`with x as (select * from accounts where id = ${k1}), y as (select * from orders where account_id = ${k2}) select * from x, y`), "keys of several shards");
});

test("subqueries without their key are refused, naming the construct and the alternative", async () => {
  const message = "a subquery or CTE reading the sharded table accounts without its shard key cannot be answered across shards: the rows it needs may be on other shards: pin its key";
  for (const sql of [`select * from accounts where id = ${k1} and balance > (select avg(balance) from accounts)`,
    `with x as (select * from accounts) select * from x`,
    `select * from accounts where id = ${k1} and exists (select 1 from accounts a2 where a2.balance = ${k1})`,
    // The subquery's key compared with an expression, or in an OR: not pinned.
    `select * from currencies where exists (select 1 from accounts where id = ${k1} or id = ${k2})`,
    // Columns renamed by the alias: a.id is no longer the key column.
    `select * from currencies where exists (select 1 from accounts a(balance, id) where a.id = ${k1})`]) {
    assert.match(await refused(sql), message, sql);
  }
  // A CTE named like the table it reads is not that table inside its own body.
  assert.match(await refused("with accounts as (select * from accounts) select count(*) from accounts"), message);
  // A later CTE sees an earlier one; a CTE does not see a later one.
  assert.equal((await explain(`with a as (select * from accounts where id = ${k1}), b as (select * from a) select * from b`)).decision.shards, [owner(k1)]);
  assert.match(await refused("with x as (select * from accounts), accounts as (select 1 as id) select * from x, accounts"), message);
  assert.equal((await explain("with recursive accounts as (select 1 as id union all select id + 1 from accounts where id < 3) select * from accounts")).decision.shards.length, 1);
  // A set operation inside a subquery, a data-modifying CTE: refused as before.
  assert.match(await refused(`select * from currencies where code in (select currency from accounts where id = ${k1} union select currency from accounts where id = ${k1})`), "UNION over a sharded table");
  assert.match(await refused(`with d as (delete from accounts where id = ${k1} returning *) select * from d`), "a data-modifying CTE (WITH … DELETE) on the sharded table accounts");
});

test("a subquery joined on its key to the outer row's key stays on the outer row's shard", async () => {
  const pinned = await explain(`select * from accounts a where a.id = ${k2} and exists (select 1 from orders o where o.account_id = a.id and o.total > 5)`);
  assert.equal(pinned.decision.shards, [owner(k2)]);
  assert.is(pinned.reason, `accounts.id = "${k2}"; subquery orders joined on o.account_id = a.id (the outer row's shard)`);
  // Each shard's outer rows find their orders on that same shard, so every shard answers its part.
  const every = await explain("select a.id, (select sum(total) from orders o where o.account_id = a.id) as spent from accounts a order by a.id");
  assert.equal(every.decision.shards, names);
  assert.equal(every.merge!.orderBy.map((o) => o.column), ["id"]);
  assert.equal((await explain(`update accounts set balance = (select count(*) from orders where orders.account_id = accounts.id) where id = ${k1}`)).decision.shards, [owner(k1)]);
  // Not the key of an enclosing table: a name the subquery itself has (shadowing), a reference table, another column.
  for (const sql of [`select * from accounts a where a.id = ${k1} and exists (select 1 from orders o join currencies a on true where o.account_id = a.id)`,
    `select * from currencies c where exists (select 1 from orders o where o.account_id = c.id)`,
    `select * from accounts a where a.id = ${k1} and exists (select 1 from orders o where o.account_id = a.balance)`,
    `select * from accounts a where a.id = ${k1} and exists (select 1 from orders o where o.account_id = id)`]) {
    assert.match(await refused(sql), "a subquery or CTE reading the sharded table orders without its shard key", sql);
  }
});

test("keys from sequences are refused pointing to NextIds", async () => {
  for (const sql of ["insert into accounts (id, balance) values (nextval('accounts_id_seq'), 0)", "insert into accounts (id, balance) values (default, 0)",
    "insert into accounts (id) values (nextval('s')::int8)", "insert into accounts default values", "insert into accounts (balance) values (0)"]) {
    const message = await refused(sql);
    assert.match(message, "NextIds; router.nextId() or router.nextIds(n) in the SDK", sql);
  }
  assert.match(await refused("insert into accounts (id, balance) values (nextval('s'), 0)"), "a sequence counts on each shard alone");
});

test("FOR UPDATE OF the table itself is no subquery", async () => {
  assert.equal((await explain(`select * from accounts where id = ${k1} for update of accounts`)).decision.shards, [owner(k1)]);
});

test("GROUP BY an alias that is also a column it reads is refused (PostgreSQL groups by the column)", async () => {
  const shadowed = await explain("select balance % 3 as balance, count(*) as n from accounts group by balance").then(() => undefined, (e: Error) => e);
  assert.match(shadowed?.message ?? "", "GROUP BY balance, both a column and the alias of another expression");
  const alias = await explain("select balance % 3 as parity, count(*) as n from accounts group by parity");
  assert.equal(alias.merge!.groupBy, ["parity"]);
});

test.run();
