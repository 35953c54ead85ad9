// Keys placed by their column's type (key-canonical.ts) and the tables' columns cache
// (table-schemas.ts), in process: '0123', ' 123 ', 123.0 and $1 = "0123" on an int8 key are placed as
// 123; a uuid in any form PostgreSQL reads as its lowercase hyphenated form; what is no value of the
// type is refused; text keys stay as written; and a GROUP BY alias is refused exactly when a FROM
// table has a column of that name.
import { Code, ConnectError } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import { PlacementConfigSchema } from "../../server/placement/placement-config.js";
import { buildShardMap } from "../../server/placement/shard-map.js";
import { loadParser } from "../../server/sql/parser.js";
import { canonicalKey, integerOf, type KeyColumnType, uuidOf } from "../../server/sql-planning/key-canonical.js";
import { StatementPlanner } from "../../server/sql-planning/statement-plan.js";
import { type TableColumns, TableSchemas } from "../../server/sql-planning/table-schemas.js";
import { test } from "../harness/uvu.js";

await loadParser();

const int2: KeyColumnType = { name: "smallint", oid: 21 };
const int4: KeyColumnType = { name: "integer", oid: 23 };
const int8: KeyColumnType = { name: "bigint", oid: 20 };
const uuid: KeyColumnType = { name: "uuid", oid: 2950 };
const text: KeyColumnType = { name: "text", oid: 25 };

function refusal(run: () => unknown): string {
  try {
    run();
  } catch (err) {
    assert.instance(err, ConnectError);
    assert.is((err as ConnectError).code, Code.InvalidArgument);
    return (err as ConnectError).rawMessage;
  }
  throw new Error("expected an InvalidArgument");
}

test("an integer key is its value's decimal text, however PostgreSQL's input writes it", () => {
  for (const [written, canonical] of [
    ["123", "123"], ["0123", "123"], [" 123 ", "123"], ["\t+123\n", "123"], ["-0042", "-42"], ["-0", "0"], ["000", "0"],
    ["123.0", "123"], ["123.000", "123"], ["1.23e2", "123"], ["12300e-2", "123"], ["0.0", "0"], ["1_000", "1000"], ["0x1F", "31"],
    ["9223372036854775807", "9223372036854775807"], ["-9223372036854775808", "-9223372036854775808"],
  ]) assert.is(canonicalKey(written, int8, "items", "id"), canonical, written);
  assert.is(canonicalKey("032767", int2, "t", "k"), "32767");
  assert.is(canonicalKey("-2147483648", int4, "t", "k"), "-2147483648");
});

test("a key that is no integer, or out of the type's range, is refused naming table, column, type and value", () => {
  const m = refusal(() => canonicalKey("12a", int8, "items", "id"));
  assert.match(m, "items.id is bigint");
  assert.match(m, '"12a"');
  assert.match(m, "not an integer");
  for (const bad of ["123.5", "", " ", "1e", "--1", "1 2", "0x", "1__0", "abc"]) refusal(() => canonicalKey(bad, int8, "items", "id"));
  assert.match(refusal(() => canonicalKey("9223372036854775808", int8, "items", "id")), "out of range for bigint");
  assert.match(refusal(() => canonicalKey("32768", int2, "t", "k")), "out of range for smallint");
  assert.match(refusal(() => canonicalKey("2147483648", int4, "t", "k")), "out of range for integer");
  assert.is(integerOf("1e400"), 10n ** 400n);
  assert.is(integerOf("1e100000"), undefined); // not worth building: far out of every range
});

test("a uuid key is lowercase and hyphenated; text and unknown types keep the key as written", () => {
  const c = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
  for (const written of [c, c.toUpperCase(), `{${c}}`, c.replace(/-/g, ""), "A0EEBC999C0B4EF8BB6D6BB9BD380A11", "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11"]) {
    assert.is(canonicalKey(written, uuid, "t", "k"), c, written);
  }
  assert.is(uuidOf("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1"), undefined);
  assert.match(refusal(() => canonicalKey("not-a-uuid", uuid, "t", "k")), "t.k is uuid");
  assert.is(canonicalKey(" 0123 ", text, "t", "k"), " 0123 ");
  assert.is(canonicalKey("0123", undefined, "t", "k"), "0123");
});

// ---- the cache -------------------------------------------------------------------------------------

function fakeCatalog() {
  const tables = new Map<string, TableColumns>();
  const reads: string[] = [];
  let clock = 1000;
  const schemas = new TableSchemas(async (relation) => {
    reads.push(relation);
    return tables.get(relation);
  }, 60_000, () => clock);
  return { tables, reads, schemas, advance: (ms: number) => { clock += ms; } };
}

test("the columns cache: a table that does not exist is not cached, one that does is until its lifetime ends or a schema change", async () => {
  const { tables, reads, schemas, advance } = fakeCatalog();
  assert.is(await schemas.load('"items"'), undefined);
  assert.is(schemas.cached('"items"'), undefined);
  tables.set('"items"', new Map([["id", int8]]));
  assert.equal((await schemas.load('"items"'))?.get("id"), int8, "created after the first look: read again");
  assert.equal(schemas.cached('"items"')?.get("id"), int8);
  await schemas.load('"items"');
  assert.is(reads.length, 2, "a cached table is not read again");
  advance(59_999);
  assert.ok(schemas.cached('"items"'));
  advance(1);
  assert.is(schemas.cached('"items"'), undefined, "expired after its lifetime");
  await schemas.load('"items"');
  assert.is(reads.length, 3);
  schemas.invalidate();
  assert.is(schemas.cached('"items"'), undefined, "a schema change forgets every table");
});

test("the columns cache: concurrent lookups read once; a read that a schema change overtook fills no entry", async () => {
  const { tables, reads, schemas } = fakeCatalog();
  tables.set('"items"', new Map([["id", int8]]));
  await Promise.all([schemas.load('"items"'), schemas.load('"items"'), schemas.load('"items"')]);
  assert.is(reads.length, 1);
  schemas.invalidate();
  const before = schemas.load('"items"');
  schemas.invalidate();
  await before;
  assert.is(schemas.cached('"items"'), undefined);
});

// ---- routing and merge planning with the columns known --------------------------------------------

const names = ["s0", "s1", "s2", "s3"];
const map = buildShardMap(PlacementConfigSchema.parse({ strategy: "hash_ring" }), names.map((name) => ({ name, weight: 1 })));
const owner = (key: string) => (map.strategy.place(key) as { shard: string }).shard;
const every = () => names;
const str = (v: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value: v } }) as Value;
const num = (v: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "numericValue", value: v } }) as Value;
const arr = (...vs: Value[]): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "arrayValue", value: { $typeName: "shardrouter.v1.ValueList", values: vs } } }) as Value;
/** A key whose text written with a leading zero is placed elsewhere than its value: the bug this fixes. */
const key = Array.from({ length: 100 }, (_, i) => String(i + 1)).find((k) => owner(k) !== owner(`0${k}`))!;
const other = Array.from({ length: 100 }, (_, i) => String(i + 1)).find((k) => owner(k) !== owner(key) && owner(k) !== owner(`0${k}`))!;

function typedPlanner() {
  const { tables, reads, schemas } = fakeCatalog();
  tables.set('"items"', new Map([["id", int8], ["grp", text], ["n", int4]]));
  tables.set('"tags"', new Map([["id", uuid], ["label", text]]));
  tables.set('"notes"', new Map([["id", text], ["grp", text]]));
  const planner = new StatementPlanner({ sharded: { items: "id", tags: "id", notes: "id" }, reference: [] }, undefined, schemas);
  return { planner, schemas, reads, explain: (sql: string, params: Value[] = []) => planner.explain(sql, params, map, every) };
}

test("keys of an int8 column are placed by value: constants, parameters, IN, ANY, INSERT rows, subqueries", async () => {
  const { explain, reads } = typedPlanner();
  for (const [sql, params] of [
    [`select * from items where id = '0${key}'`, []], [`select * from items where id = ${key}.0`, []], [`select * from items where id = ' ${key} '`, []],
    ["select * from items where id = $1", [str(`0${key}`)]], ["select * from items where id = $1", [num(`${key}.00`)]],
    [`select * from items where id in ('0${key}', ${key})`, []], ["select * from items where id = any($1)", [arr(str(`00${key}`), num(key))]],
    [`select * from items where id = ${key} and n > (select count(*) from items i2 where i2.id = '0${key}')`, []],
  ] as [string, Value[]][]) {
    const e = await explain(sql, params);
    assert.equal(e.decision.shards, [owner(key)], sql);
    assert.ok(e.decision.keys[0].values.every((v) => v === key), `${sql}: ${JSON.stringify(e.decision.keys)}`);
  }
  const e = await explain(`insert into items (id, grp) values ('0${key}', 'a'), ($1, 'b')`, [str(`+0${other}`)]);
  assert.equal(e.decision.rowShards, [owner(key), owner(other)]);
  assert.equal(e.decision.keys[0].values, [key, other]);
  assert.equal(reads, ['"items"'], "the table's columns read once, then cached");
  assert.match(await refusedMessage(() => explain("select * from items where id = $1", [str("12x")])), 'items.id is bigint: the key "12x" is not an integer');
  assert.match(await refusedMessage(() => explain("insert into items (id) values (1.5)")), 'items.id is bigint: the key "1.5"');
});

test("a uuid key in any form is placed as its canonical text; a text key as written", async () => {
  const { explain } = typedPlanner();
  const u = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
  const e = await explain("select * from tags where id = $1", [str(`{${u.toUpperCase()}}`)]);
  assert.equal(e.decision.keys[0].values, [u]);
  assert.equal(e.decision.shards, [owner(u)]);
  const n = await explain(`select * from notes where id = '0${key}'`);
  assert.equal(n.decision.shards, [owner(`0${key}`)]);
});

test("without the columns (no schemas, or a table the catalog lacks) keys are placed as written", async () => {
  const plain = new StatementPlanner({ sharded: { items: "id" }, reference: [] });
  assert.equal((await plain.explain(`select * from items where id = '0${key}'`, [], map, every)).decision.shards, [owner(`0${key}`)]);
  const { schemas } = typedPlanner();
  const missing = new StatementPlanner({ sharded: { gone: "id" }, reference: [] }, undefined, schemas);
  assert.equal((await missing.explain(`select * from gone where id = '0${key}'`, [], map, every)).decision.shards, [owner(`0${key}`)]);
});

test("GROUP BY an alias is refused when a FROM table has a column of that name, allowed when none has", async () => {
  const { explain } = typedPlanner();
  // `grp` is a column of items that the statement does not otherwise mention.
  assert.match(await refusedMessage(() => explain("select upper(n::text) as grp, count(*) from items group by grp")), "GROUP BY grp, both a column and the alias of another expression");
  assert.match(await refusedMessage(() => explain("select length(grp) as n, count(*) from items i group by n")), "GROUP BY n");
  const ok = await explain("select upper(grp) as g, count(*) from items group by g");
  assert.equal(ok.merge?.groupBy, ["g"]);
  // A FROM item whose columns are not looked up (a function): the statement's own mentions decide, as before.
  assert.equal((await explain("select upper(grp) as y, count(*) from items, generate_series(1, 2) g(k) group by y")).merge?.groupBy, ["y"]);
  assert.match(await refusedMessage(() => explain("select upper(grp) as k, count(*) from items, generate_series(1, 2) g(k) where k > 0 group by k")), "GROUP BY k");
  // One shard answers: nothing is merged, so nothing is refused.
  assert.is((await explain(`select upper(n::text) as grp, count(*) from items where id = ${key} group by grp`)).merge, undefined);
});

async function refusedMessage(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
  } catch (err) {
    assert.instance(err, ConnectError);
    assert.is((err as ConnectError).code, Code.InvalidArgument);
    return (err as ConnectError).rawMessage;
  }
  throw new Error("expected an InvalidArgument");
}
test.run();
