import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { AggregateFunction, AggregateSchema } from "../../gen/shardrouter/v1/router_pb.js";
import type { Column, Row } from "../../gen/shardrouter/v1/value_pb.js";
import { AggregateStep } from "../../server/execution/merge/aggregate.js";
import { col, rows, table, throwsConnect, v } from "./helpers.js";

const { COUNT, SUM, MIN, MAX, AVG } = AggregateFunction;
const agg = (fn: AggregateFunction, column: string, sumColumn = "", countColumn = "") =>
  create(AggregateSchema, { function: fn, column, sumColumn, countColumn });
const run = (groupBy: string[], aggregates: ReturnType<typeof agg>[], columns: Column[], parts: Row[][]) =>
  new AggregateStep(groupBy, aggregates).apply({ columns, parts });
const types = (cs: Column[]) => cs.map((c) => `${c.name}:${c.type}:${c.typeOid}`);

const INT64_MAX = (1n << 63n) - 1n;

test("COUNT: partial counts add up per group; groups in first-seen order; one part out", () => {
  const columns = [col("k", "text", 25), col("n")];
  const out = run(["k"], [agg(COUNT, "n")], columns, [
    rows(["b", 2], ["a", 1]),
    rows(["a", 10], ["c", 5]),
    [],
    rows(["b", 3]),
  ]);
  assert.is(out.parts.length, 1);
  assert.equal(table(out.parts[0]!), [["'b'", "5"], ["'a'", "11"], ["'c'", "5"]]);
});

test("COUNT output column is int8 even if a shard typed it otherwise", () => {
  const out = run([], [agg(COUNT, "n")], [col("n", "numeric", 1700)], [rows([v.num("4")]), rows([v.int(3)])]);
  assert.equal(types(out.columns), ["n:int8:20"]);
  assert.equal(table(out.parts[0]!), [["7"]]);
});

test("a COUNT partial that is not a whole number is an Internal error", () => {
  throwsConnect(() => run([], [agg(COUNT, "n")], [col("n")], [rows([v.num("1.5")])]), Code.Internal, "cannot use a numericValue value as a partial COUNT");
  throwsConnect(() => run([], [agg(COUNT, "n")], [col("n")], [rows([v.str("1")])]), Code.Internal, "cannot use a stringValue value as a partial COUNT");
  assert.equal(table(run([], [agg(COUNT, "n")], [col("n")], [rows([v.num("2.00")], [v.dbl(3)])]).parts[0]!), [["5"]]);
});

test("GROUP BY puts NULLs in one group and equal numerics of different text in one group", () => {
  const columns = [col("k", "numeric", 1700), col("n")];
  const out = run(["k"], [agg(COUNT, "n")], columns, [
    rows([v.num("1.50"), 1], [null, 1], [v.unset(), 4]),
    rows([v.num("1.5"), 2], [null, 3], [v.num("-0.0"), 1]),
    rows([v.num("0"), 1], [v.num("1.500"), 1]),
  ]);
  assert.equal(table(out.parts[0]!), [["1.50n", "4"], ["NULL", "8"], ["-0.0n", "2"]]);
});

test("GROUP BY several columns does not confuse values across columns or kinds", () => {
  const columns = [col("a", "text", 25), col("b", "text", 25), col("n")];
  const out = run(["a", "b"], [agg(SUM, "n")], columns, [
    rows(["x", "y", 1], ["x,y", "", 2], ["x", null, 4]),
    rows(["x", "y", 10], ["x", "", 20], [null, "x", 40], ["x", null, 80]),
  ]);
  assert.equal(table(out.parts[0]!), [["'x'", "'y'", "11"], ["'x,y'", "''", "2"], ["'x'", "NULL", "84"], ["'x'", "''", "20"], ["NULL", "'x'", "40"]]);
});

test("GROUP BY int64 5, double 5 and numeric 5.0 is one group; '5' text is another", () => {
  const columns = [col("k", "numeric", 1700), col("n")];
  const out = run(["k"], [agg(COUNT, "n")], columns, [rows([v.int(5), 1], [v.dbl(5), 1], [v.num("5.0"), 1], [v.str("5"), 1], [v.dbl(NaN), 1], [v.num("NaN"), 1])]);
  assert.equal(table(out.parts[0]!), [["5", "3"], ["'5'", "1"], ["NaNd", "2"]]);
});

test("SUM int64 skips NULL partials; an all-NULL group stays NULL", () => {
  const columns = [col("k", "text", 25), col("s")];
  const out = run(["k"], [agg(SUM, "s")], columns, [rows(["a", 5], ["b", null]), rows(["a", null], ["b", v.unset()]), rows(["a", -7])]);
  assert.equal(table(out.parts[0]!), [["'a'", "-2"], ["'b'", "NULL"]]);
  assert.equal(types(out.columns), ["k:text:25", "s:int8:20"]);
});

test("SUM int64 overflowing the int64 range becomes numeric, for the whole column", () => {
  const columns = [col("k", "text", 25), col("s")];
  const out = run(["k"], [agg(SUM, "s")], columns, [rows(["big", INT64_MAX], ["small", 1]), rows(["big", 1], ["small", 2])]);
  assert.equal(table(out.parts[0]!), [["'big'", "9223372036854775808n"], ["'small'", "3n"]]);
  assert.equal(types(out.columns), ["k:text:25", "s:numeric:1700"]);
});

test("SUM int64 whose running total leaves the range but ends inside stays int64", () => {
  const out = run([], [agg(SUM, "s")], [col("s")], [rows([INT64_MAX]), rows([1]), rows([-1])]);
  assert.equal(table(out.parts[0]!), [[String(INT64_MAX)]]);
  assert.equal(types(out.columns), ["s:int8:20"]);
  const low = run([], [agg(SUM, "s")], [col("s")], [rows([-(1n << 63n)]), rows([-1])]);
  assert.equal(table(low.parts[0]!), [["-9223372036854775809n"]]);
});

test("SUM numeric is exact: 0.1 + 0.2 = 0.3; scale and specials as Postgres", () => {
  const columns = [col("k", "text", 25), col("s", "numeric", 1700)];
  const out = run(["k"], [agg(SUM, "s")], columns, [
    rows(["a", v.num("0.1")], ["b", v.num("0.10")], ["c", v.num("Infinity")], ["d", v.num("12345678901234567890.5")]),
    rows(["a", v.num("0.2")], ["b", v.num("0.2")], ["c", v.num("-Infinity")], ["d", v.num("12345678901234567890.5")]),
  ]);
  assert.equal(table(out.parts[0]!), [["'a'", "0.3n"], ["'b'", "0.30n"], ["'c'", "NaNn"], ["'d'", "24691357802469135781.0n"]]);
});

test("SUM double adds floats", () => {
  const out = run([], [agg(SUM, "s")], [col("s", "float8", 701)], [rows([v.dbl(0.5)]), rows([v.null()]), rows([v.dbl(0.25)])]);
  assert.equal(table(out.parts[0]!), [["0.75d"]]);
});

test("MIN/MAX skip NULLs and use the value ordering (code points, numeric, NaN)", () => {
  const columns = [col("k", "text", 25), col("lo", "text", 25), col("hi", "text", 25), col("nlo", "numeric", 1700), col("dhi", "float8", 701)];
  const out = run(["k"], [agg(MIN, "lo"), agg(MAX, "hi"), agg(MIN, "nlo"), agg(MAX, "dhi")], columns, [
    rows(["g", null, "\uFFFD", v.num("10"), v.dbl(1)], ["n", null, null, null, null]),
    rows(["g", "b", "\u{1F600}", v.num("9.5"), v.dbl(NaN)], ["n", null, null, null, null]),
    rows(["g", "B", null, v.num("-0.001"), v.dbl(Infinity)]),
  ]);
  assert.equal(table(out.parts[0]!), [
    ["'g'", "'B'", "'\u{1F600}'", "-0.001n", "NaNd"],
    ["'n'", "NULL", "NULL", "NULL", "NULL"],
  ]);
});

test("AVG = merged sum / merged count, exact, appended as numeric; helper columns merged too", () => {
  const columns = [col("k", "text", 25), col("s"), col("c")];
  const out = run(["k"], [agg(AVG, "avg_x", "s", "c")], columns, [
    rows(["a", 1, 1], ["b", 10, 3], ["z", null, 0]),
    rows(["a", 2, 1], ["b", null, 0]),
    rows(["a", 2, 1], ["z", null, 0]),
  ]);
  assert.equal(types(out.columns), ["k:text:25", "s:int8:20", "c:int8:20", "avg_x:numeric:1700"]);
  assert.equal(table(out.parts[0]!), [
    ["'a'", "5", "3", "1.6666666666666667n"],
    ["'b'", "10", "3", "3.3333333333333333n"],
    ["'z'", "NULL", "0", "NULL"],
  ]);
});

test("AVG over numeric sums keeps their scale when it exceeds 16; over float8 gives float8", () => {
  const columns = [col("s", "numeric", 1700), col("c"), col("fs", "float8", 701), col("avg_f", "float8", 701)];
  const out = run([], [agg(AVG, "avg", "s", "c"), agg(AVG, "avg_f", "fs", "c")], columns, [
    rows([v.num("0.00000000000000000003"), 1, v.dbl(1), v.dbl(1)]),
    rows([v.num("0.1"), 2, v.dbl(2), v.dbl(1)]),
  ]);
  assert.equal(types(out.columns), ["s:numeric:1700", "c:int8:20", "fs:float8:701", "avg_f:float8:701", "avg:numeric:1700"]);
  assert.equal(table(out.parts[0]!), [["0.10000000000000000003n", "3", "3d", "1d", "0.03333333333333333334n"]]);
});

test("AVG overwrites a column of that name the shards returned; explicit SUM/COUNT on helpers are honoured", () => {
  const columns = [col("k", "text", 25), col("avg", "numeric", 1700), col("s"), col("c")];
  const out = run(["k"], [agg(AVG, "avg", "s", "c"), agg(MAX, "s"), agg(COUNT, "c")], columns, [
    rows(["a", v.num("1"), 1, 1]),
    rows(["a", v.num("4"), 4, 1]),
  ]);
  assert.equal(table(out.parts[0]!), [["'a'", "2.5000000000000000n", "4", "2"]]);
});

test("columns that are neither grouped nor aggregated keep the group's first-seen value", () => {
  const columns = [col("k", "text", 25), col("label", "text", 25), col("n")];
  const out = run(["k"], [agg(COUNT, "n")], columns, [rows(["a", "from shard 0", 1]), rows(["a", "from shard 1", 1], ["b", "only", 1])]);
  assert.equal(table(out.parts[0]!), [["'a'", "'from shard 0'", "2"], ["'b'", "'only'", "1"]]);
});

test("no groupBy: one row over all shards; no rows in, no rows out", () => {
  const columns = [col("c"), col("s")];
  const out = run([], [agg(COUNT, "c"), agg(SUM, "s")], columns, [rows([0, null]), rows([2, 7]), rows([0, null])]);
  assert.equal(table(out.parts[0]!), [["2", "7"]]);
  assert.equal(run([], [agg(COUNT, "c")], columns, [[], []]).parts, [[]]);
});

test("groupBy without aggregates de-duplicates (DISTINCT)", () => {
  const out = run(["k"], [], [col("k")], [rows([1], [2]), rows([2], [1], [null]), rows([null])]);
  assert.equal(table(out.parts[0]!), [["1"], ["2"], ["NULL"]]);
});

test("does not mutate its input rows", () => {
  const part = rows(["a", 1], ["a", 2]);
  run(["k"], [agg(SUM, "n")], [col("k", "text", 25), col("n")], [part]);
  assert.equal(table(part), [["'a'", "1"], ["'a'", "2"]]);
});

test.run();
