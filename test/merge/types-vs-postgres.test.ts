// Merge order for every type the Value codec maps, against PostgreSQL itself: the same rows on the
// shards (placed by the router) and in one reference database, every `order by col [asc|desc] nulls
// first|last, id` merged by the router and compared with the reference's order; then group by →
// order by count → limit, and AVG, compared exactly. The expected order never comes from the code
// under test.
import * as assert from "uvu/assert";
import postgres from "postgres";
import { AggregateFunction, NullsOrder } from "../../gen/shardrouter/v1/router_pb.js";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";
import { plainRows } from "../e2e/values.js";

let t: TestRouter;
let reference: postgres.Sql;

const table = `create table typed (
  id int primary key, k text not null, f float8, b bool, by bytea, u uuid, d date, ia int[], t text, n numeric, iv int)`;
const columns = ["f", "b", "by", "u", "d", "ia", "t", "n"] as const;

/** Deterministic rows with ties, NULLs and every special value of each type. */
function rows(count: number): unknown[][] {
  let seed = 7;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2147483648) % n);
  const pick = <T>(xs: T[]) => xs[rand(xs.length)];
  const floats = ["NaN", "Infinity", "-Infinity", "-0", "0", "1.5", "-2.25", "1e308", "-1e-308", "3", "3", null];
  const bytes = ["\\x", "\\x00", "\\x0001", "\\xff", "\\x7f80", "\\x00ff", "\\x01", null];
  const uuids = ["00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12", "0fffffff-ffff-ffff-ffff-ffffffffffff", null];
  const dates = ["2024-02-29", "1999-12-31", "infinity", "-infinity", "0001-01-01 BC", "0044-03-15 BC", "10000-01-01", "2024-02-29", null];
  const arrays = ["{}", "{1}", "{1,2}", "{1,NULL}", "{NULL}", "{NULL,1}", "{2}", "{1,2,3}", "{-1}", "{1,2}", null];
  const texts = ["", "a", "A", "ab", "b", "Émile", "émile", "😀", "\uFFFD", "z", "a", null];
  const numerics = ["NaN", "Infinity", "-Infinity", "0", "-0.000", "1.10", "1.1", "-5", "12345678901234567890.123", null];
  return Array.from({ length: count }, (_, id) => [
    String(id), `typed-${rand(400)}`, pick(floats), pick(["true", "false", null]), pick(bytes), pick(uuids), pick(dates),
    pick(arrays), pick(texts), pick(numerics), rand(5) === 0 ? null : String(rand(1000)),
  ]);
}

const insert = `insert into typed (id, k, f, b, by, u, d, ia, t, n, iv)
  values ($1::text::int, $2::text, $3::text::float8, $4::text::bool, $5::text::bytea, $6::text::uuid, $7::text::date,
          $8::text::int[], $9::text, $10::text::numeric, $11::text::int)`; // all text: postgres.js serialises nothing itself

test.before(hook(async () => {
  t = await startTestRouter({ shards: 3 });
  const data = rows(400);
  const primaries = new Map(t.cluster.shards.map((s) => [s.name, t.direct(s.nodes[0])]));
  for (const sql of primaries.values()) await sql.unsafe(table);
  for (const r of data) {
    const { shard } = await t.router.planner.route(r[1] as string);
    await primaries.get(shard.name)!.unsafe(insert, r as never);
  }
  await t.direct(t.cluster.catalog).unsafe("create database reference");
  const c = t.cluster.catalog;
  reference = postgres({ host: c.host, port: c.port, user: c.user, password: c.password, database: "reference", max: 2, onnotice: () => {} });
  await reference.unsafe(table);
  for (const r of data) await reference.unsafe(insert, r as never);
}));
test.after(hook(async () => {
  await reference?.end({ timeout: 1 });
  await t?.stop();
}));

test("every ORDER BY col [ASC|DESC] NULLS FIRST|LAST, id merges to Postgres' own order", async () => {
  for (const col of columns) {
    for (const descending of [false, true]) {
      for (const nullsFirst of [true, false]) {
        const sql = `select id, ${col} from typed order by ${col} ${descending ? "desc" : "asc"} nulls ${nullsFirst ? "first" : "last"}, id`;
        const res = await t.grpc.executeOnAll({
          sql,
          merge: { orderBy: [{ column: col, descending, nulls: nullsFirst ? NullsOrder.FIRST : NullsOrder.LAST }, { column: "id" }] },
        });
        const want = (await reference.unsafe(sql).values()).map((r) => Number(r[0]));
        const got = plainRows(res.result).map((r) => Number(r[0]));
        assert.equal(got, want, sql);
      }
    }
  }
});

test("GROUP BY col → ORDER BY count DESC, col → LIMIT merges to Postgres' answer", async () => {
  // Each group is named by its smallest id, so groups compare whatever their values look like as text.
  for (const col of columns) {
    const res = await t.grpc.executeOnAll({
      sql: `select ${col}, count(*) as cnt, min(id) as first_id from typed group by ${col}`,
      merge: {
        groupBy: [col],
        aggregates: [{ column: "cnt", function: AggregateFunction.COUNT }, { column: "first_id", function: AggregateFunction.MIN }],
        orderBy: [{ column: "cnt", descending: true }, { column: col, nulls: NullsOrder.LAST }], limit: 4n,
      },
    });
    const sql = `select count(*) as cnt, min(id) as first_id from typed group by ${col} order by cnt desc, ${col} nulls last limit 4`;
    const want = (await reference.unsafe(sql).values()).map((r) => [String(r[0]), String(r[1])]);
    const got = plainRows(res.result).map((r) => [String(r[1]), String(r[2])]);
    assert.equal(got, want, sql);
  }
});

test("AVG from merged sums and counts equals Postgres' avg exactly", async () => {
  const res = await t.grpc.executeOnAll({
    sql: "select b, sum(iv) as s, count(iv) as c from typed group by b",
    merge: {
      groupBy: ["b"], orderBy: [{ column: "b" }],
      aggregates: [
        { column: "s", function: AggregateFunction.SUM }, { column: "c", function: AggregateFunction.COUNT },
        { column: "avg_iv", function: AggregateFunction.AVG, sumColumn: "s", countColumn: "c" },
      ],
    },
  });
  const at = res.result!.columns.findIndex((c) => c.name === "avg_iv");
  const got = plainRows(res.result).map((r) => [r[0], r[at]]);
  const want = (await reference.unsafe("select b, avg(iv)::text from typed group by b order by b").values()).map((r) => [r[0], r[1]]);
  assert.equal(got, want);
  const overall = await t.grpc.executeOnAll({
    sql: "select sum(n) as s, count(n) as c from typed where n not in ('NaN', 'Infinity', '-Infinity')",
    merge: { aggregates: [
      { column: "s", function: AggregateFunction.SUM }, { column: "c", function: AggregateFunction.COUNT },
      { column: "avg_n", function: AggregateFunction.AVG, sumColumn: "s", countColumn: "c" },
    ] },
  });
  const [{ avg }] = await reference.unsafe("select avg(n)::text as avg from typed where n not in ('NaN', 'Infinity', '-Infinity')");
  const avgAt = overall.result!.columns.findIndex((c) => c.name === "avg_n");
  assert.is(plainRows(overall.result)[0][avgAt], avg, "numeric AVG, exactly as Postgres prints it");
});

test.run();
