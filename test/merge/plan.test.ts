import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { AggregateFunction, AggregateSchema, MergeSpecSchema } from "../../gen/shardrouter/v1/router_pb.js";
import { planMerge, runMerge } from "../../server/execution/merge/plan.js";
import { col, order, rows, table, throwsConnect, v } from "./helpers.js";

type SpecInit = Parameters<typeof create<typeof MergeSpecSchema>>[1];
const spec = (init: SpecInit) => create(MergeSpecSchema, init);
const agg = (fn: AggregateFunction, column: string, sumColumn = "", countColumn = "") =>
  create(AggregateSchema, { function: fn, column, sumColumn, countColumn });
const columns = [col("k", "text", 25), col("n"), col("s"), col("c")];
const names = (s: SpecInit | undefined) => planMerge(s === undefined ? undefined : spec(s), columns).map((step) => step.name);

test("pipelines for each kind of spec", () => {
  assert.equal(planMerge(undefined, columns).map((s) => s.name), ["concatenate"]);
  assert.equal(names({}), ["concatenate"]);
  assert.equal(names({ orderBy: [order("n")] }), ["mergeSort"]);
  assert.equal(names({ orderBy: [order("n")], limit: 10n }), ["mergeSort", "limit"]);
  assert.equal(names({ limit: 0n }), ["concatenate", "limit"]);
  assert.equal(names({ offset: 5n }), ["concatenate", "limit"]);
  assert.equal(names({ groupBy: ["k"] }), ["aggregate"]);
  assert.equal(names({ aggregates: [agg(AggregateFunction.COUNT, "n")] }), ["aggregate"]);
  assert.equal(names({ groupBy: ["k"], aggregates: [agg(AggregateFunction.SUM, "n")], orderBy: [order("n", true)], limit: 3n, offset: 1n }), ["aggregate", "sort", "limit"]);
});

test("unknown columns are InvalidArgument naming the column and the available ones", () => {
  const available = "available columns: k, n, s, c";
  throwsConnect(() => names({ orderBy: [order("x")] }), Code.InvalidArgument, `merge orderBy names unknown column "x"; ${available}`);
  throwsConnect(() => names({ groupBy: ["k", "nope"] }), Code.InvalidArgument, `merge groupBy names unknown column "nope"; ${available}`);
  throwsConnect(() => names({ aggregates: [agg(AggregateFunction.SUM, "total")] }), Code.InvalidArgument, `merge aggregate SUM names unknown column "total"; ${available}`);
  throwsConnect(() => names({ aggregates: [agg(AggregateFunction.AVG, "a", "s", "cnt")] }), Code.InvalidArgument, `merge aggregate AVG countColumn names unknown column "cnt"; ${available}`);
  throwsConnect(() => names({ groupBy: ["k"], orderBy: [order("avg_n")] }), Code.InvalidArgument, /unknown column "avg_n"/);
  throwsConnect(() => planMerge(spec({ orderBy: [order("n")] }), []), Code.InvalidArgument, 'merge orderBy names unknown column "n"; available columns: (none)');
});

test("AVG without sum/count columns, or an unspecified function, is InvalidArgument", () => {
  throwsConnect(() => names({ aggregates: [agg(AggregateFunction.AVG, "a")] }), Code.InvalidArgument, /AVG aggregate "a" needs column, sumColumn and countColumn/);
  throwsConnect(() => names({ aggregates: [agg(AggregateFunction.AVG, "a", "s")] }), Code.InvalidArgument, /needs column, sumColumn and countColumn/);
  throwsConnect(() => names({ aggregates: [agg(AggregateFunction.UNSPECIFIED, "n")] }), Code.InvalidArgument, /aggregate on column "n" has no function/);
  throwsConnect(() => names({ aggregates: [agg(42 as AggregateFunction, "n")] }), Code.InvalidArgument, /has no function/);
});

test("conflicting aggregates are InvalidArgument", () => {
  throwsConnect(() => names({ aggregates: [agg(AggregateFunction.SUM, "n"), agg(AggregateFunction.MAX, "n")] }), Code.InvalidArgument, /MAX\(n\) and SUM\(n\) both target column "n"/);
  throwsConnect(() => names({ groupBy: ["n"], aggregates: [agg(AggregateFunction.SUM, "n")] }), Code.InvalidArgument, /also a groupBy column/);
  throwsConnect(() => names({ groupBy: ["s"], aggregates: [agg(AggregateFunction.AVG, "a", "s", "c")] }), Code.InvalidArgument, /reads column "s", which is also a groupBy column/);
});

test("ORDER BY may name the AVG column the aggregation appends", () => {
  const s = spec({ groupBy: ["k"], aggregates: [agg(AggregateFunction.AVG, "avg_n", "s", "c")], orderBy: [order("avg_n", true)] });
  const out = runMerge(planMerge(s, columns), {
    columns,
    parts: [rows(["a", 0, 1, 1], ["b", 0, 9, 1]), rows(["a", 0, 2, 1], ["c", 0, null, 0])],
  });
  assert.equal(out.columns.map((c) => c.name), ["k", "n", "s", "c", "avg_n"]);
  assert.equal(table(out.rows).map((r) => [r[0], r[4]]), [["'c'", "NULL"], ["'b'", "9.0000000000000000n"], ["'a'", "1.5000000000000000n"]]);
});

test("runMerge end to end: merge-sort then offset/limit", () => {
  const s = spec({ orderBy: [order("n", true)], limit: 2n, offset: 1n });
  const out = runMerge(planMerge(s, columns), { columns, parts: [rows(["a", 9, 0, 0], ["b", 3, 0, 0]), rows(["c", 7, 0, 0], ["d", 5, 0, 0])] });
  assert.equal(table(out.rows).map((r) => r[0]), ["'c'", "'d'"]);
  assert.is(out.columns, columns);
});

test("runMerge end to end: aggregate, sort by the count, top 2", () => {
  const s = spec({ groupBy: ["k"], aggregates: [agg(AggregateFunction.COUNT, "n")], orderBy: [order("n", true), order("k")], limit: 2n });
  const out = runMerge(planMerge(s, columns), {
    columns,
    parts: [rows(["x", 1, 0, 0], ["y", 5, 0, 0]), rows(["z", 4, 0, 0], ["x", 3, 0, 0], ["w", 4, 0, 0])],
  });
  assert.equal(table(out.rows).map((r) => [r[0], r[1]]), [["'y'", "5"], ["'w'", "4"]]);
});

test("runMerge with no steps concatenates the parts", () => {
  const out = runMerge([], { columns, parts: [rows(["a", 1, 0, 0]), [], rows(["b", 2, 0, 0])] });
  assert.equal(table(out.rows).map((r) => r[0]), ["'a'", "'b'"]);
});

test("a column name that appears twice resolves to the first", () => {
  const dup = [col("id"), col("id"), col("x")];
  const out = runMerge(planMerge(spec({ orderBy: [order("id")] }), dup), {
    columns: dup,
    parts: [rows([1, 9, 0], [2, 0, 0]), rows([0, 5, 1])],
  });
  assert.equal(table(out.rows).map((r) => r[0]), ["0", "1", "2"]);
});

test("merge-sort errors surface through runMerge", () => {
  const s = spec({ orderBy: [order("n")] });
  throwsConnect(() => runMerge(planMerge(s, columns), { columns, parts: [rows(["a", 2, 0, 0], ["b", 1, 0, 0]), rows(["c", v.int(0), 0, 0])] }),
    Code.FailedPrecondition, "shard results are not ordered by n ASC: add the same ORDER BY to the statement");
});

test.run();
