import { Code } from "@connectrpc/connect";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { NullsOrder, type OrderBy } from "../../gen/shardrouter/v1/router_pb.js";
import type { Row, Value } from "../../gen/shardrouter/v1/value_pb.js";
import { resolveOrder } from "../../server/execution/merge/columns.js";
import { compareRows } from "../../server/execution/merge/compare-values.js";
import { LimitStep } from "../../server/execution/merge/limit.js";
import { MergeSortStep } from "../../server/execution/merge/merge-sort.js";
import { col, order, prng, row, rows, show, table, throwsConnect, v } from "./helpers.js";

const columns = [col("a"), col("b", "text", 25), col("shard", "int4", 23)];
const merge = (keys: OrderBy[], parts: Row[][]) => new MergeSortStep(keys).apply({ columns, parts }).parts;

test("merges ascending parts into one ascending part", () => {
  const out = merge([order("a")], [rows([1, "x", 0], [4, "x", 0], [7, "x", 0]), rows([2, "x", 1], [3, "x", 1]), rows([0, "x", 2], [9, "x", 2])]);
  assert.is(out.length, 1);
  assert.equal(table(out[0]!).map((r) => r[0]), ["0", "1", "2", "3", "4", "7", "9"]);
});

test("DESC defaults to NULLS FIRST", () => {
  const out = merge([order("a", true)], [rows([null, "x", 0], [5, "x", 0], [1, "x", 0]), rows([null, "x", 1], [6, "x", 1], [2, "x", 1])]);
  assert.equal(table(out[0]!).map((r) => r[0]), ["NULL", "NULL", "6", "5", "2", "1"]);
});

test("multi-column: a ASC NULLS FIRST, b DESC NULLS LAST", () => {
  const keys = [order("a", false, NullsOrder.FIRST), order("b", true, NullsOrder.LAST)];
  const out = merge(keys, [
    rows([null, "q", 0], [1, "z", 0], [1, null, 0], [2, "b", 0]),
    rows([null, null, 1], [1, "y", 1], [2, "c", 1], [2, null, 1]),
    rows([1, "zz", 2], [3, "a", 2]),
  ]);
  assert.equal(table(out[0]!), [
    ["NULL", "'q'", "0"], ["NULL", "NULL", "1"], ["1", "'zz'", "2"], ["1", "'z'", "0"], ["1", "'y'", "1"], ["1", "NULL", "0"],
    ["2", "'c'", "1"], ["2", "'b'", "0"], ["2", "NULL", "1"], ["3", "'a'", "2"],
  ]);
});

test("stable: equal keys come in shard order, then each shard's own order", () => {
  const out = merge([order("a")], [
    rows([1, "s0-first", 0], [1, "s0-second", 0], [2, "s0", 0]),
    rows([0, "s1", 1], [1, "s1-first", 1], [1, "s1-second", 1]),
    rows([1, "s2", 2]),
  ]);
  assert.equal(table(out[0]!).map((r) => r[1]), ["'s1'", "'s0-first'", "'s0-second'", "'s1-first'", "'s1-second'", "'s2'", "'s0'"]);
});

test("ordering by code point puts astral characters after U+FFFD", () => {
  const out = merge([order("b")], [rows([0, "\uFFFD", 0], [0, "\u{1F600}", 0]), rows([0, "a", 1], [0, "\u{10000}", 1])]);
  assert.equal(table(out[0]!).map((r) => r[1]), ["'a'", "'\uFFFD'", "'\u{10000}'", "'\u{1F600}'"]);
});

test("empty parts", () => {
  assert.equal(merge([order("a")], []), [[]]);
  assert.equal(merge([order("a")], [[], [], []]), [[]]);
  assert.equal(table(merge([order("a")], [[], rows([2, "x", 1], [5, "x", 1]), []])[0]!).map((r) => r[0]), ["2", "5"]);
  assert.equal(table(merge([order("a")], [rows([3, "x", 0]), [], rows([1, "x", 2])])[0]!).map((r) => r[0]), ["1", "3"]);
});

test("detects a part that is not sorted (missing ORDER BY)", () => {
  const message = "shard results are not ordered by a ASC: add the same ORDER BY to the statement";
  throwsConnect(() => merge([order("a")], [rows([1, "x", 0], [2, "x", 0]), rows([5, "x", 1], [3, "x", 1])]), Code.FailedPrecondition, message);
  // Also with a single non-empty part, where no interleaving happens.
  throwsConnect(() => merge([order("a")], [[], rows([2, "x", 1], [1, "x", 1])]), Code.FailedPrecondition, message);
});

test("the error names the key and direction that is out of order", () => {
  throwsConnect(() => merge([order("a", true)], [rows([1, "x", 0], [2, "x", 0])]), Code.FailedPrecondition,
    "shard results are not ordered by a DESC: add the same ORDER BY to the statement");
  // First key equal, second out of order.
  throwsConnect(() => merge([order("a"), order("b", true)], [rows([1, "a", 0], [1, "b", 0])]), Code.FailedPrecondition,
    "shard results are not ordered by b DESC: add the same ORDER BY to the statement");
  // NULL placement that contradicts the spec (the shard used the default, the spec says NULLS FIRST).
  throwsConnect(() => merge([order("a", false, NullsOrder.FIRST)], [rows([1, "x", 0], [null, "x", 0])]), Code.FailedPrecondition,
    "shard results are not ordered by a ASC NULLS FIRST: add the same ORDER BY to the statement");
});

test("detects a shard whose collation is not code-point order", () => {
  // en_US sorts 'a' before 'B'; C collation (and the merge) puts 'B' (0x42) first.
  throwsConnect(() => merge([order("b")], [rows([0, "B", 0], [0, "c", 0]), rows([0, "a", 1], [0, "B", 1])]), Code.FailedPrecondition,
    "shard results are not ordered by b ASC: add the same ORDER BY to the statement");
});

test("unknown order column is InvalidArgument listing the available columns", () => {
  throwsConnect(() => merge([order("missing")], [[]]), Code.InvalidArgument,
    'merge orderBy names unknown column "missing"; available columns: a, b, shard');
});

test("does not mutate its input", () => {
  const parts = [rows([1, "x", 0], [3, "x", 0]), rows([2, "x", 1])];
  merge([order("a")], parts);
  assert.equal(parts.map((p) => table(p).map((r) => r[0])), [["1", "3"], ["2"]]);
});

// ---- property: split, sort each part, merge-sort + limit == sort everything + slice ----------------

function randomValue(rand: () => number, kind: number): Value {
  if (rand() < 0.15) return v.null();
  switch (kind) {
    case 0: return v.int(Math.floor(rand() * 7) - 3); // many duplicates
    case 1: return v.str(["", "a", "B", "ab", "é", "\uFFFD", "\u{1F600}", "\u{1F600}a", "z"][Math.floor(rand() * 9)]!);
    default: return v.dbl([NaN, -Infinity, Infinity, -0, 0, 1.5, -2.25, 1e300][Math.floor(rand() * 8)]!);
  }
}

test("property: merge-sort + limit of 4 sorted parts equals a full sort + slice", () => {
  const cols = [col("i"), col("s", "text", 25), col("d", "float8", 701), col("id")];
  for (let seed = 1; seed <= 300; seed++) {
    const rand = prng(seed);
    const n = Math.floor(rand() * 60);
    const data = Array.from({ length: n }, (_, id) => row(randomValue(rand, 0), randomValue(rand, 1), randomValue(rand, 2), v.int(id)));
    const keys = Array.from({ length: 1 + Math.floor(rand() * 3) }, () =>
      order(["i", "s", "d"][Math.floor(rand() * 3)]!, rand() < 0.5, [NullsOrder.UNSPECIFIED, NullsOrder.FIRST, NullsOrder.LAST][Math.floor(rand() * 3)]!));
    const compare = compareRows(resolveOrder(keys, cols));

    // Deal rows to 4 shards at random, each shard sorting its own rows (stable, like ORDER BY ..., id).
    const parts: Row[][] = [[], [], [], []];
    for (const r of data) parts[Math.floor(rand() * 4)]!.push(r);
    for (const p of parts) p.sort(compare);

    const limit = rand() < 0.3 ? undefined : BigInt(Math.floor(rand() * (n + 5)));
    const offset = BigInt(Math.floor(rand() * 5));
    let merged = new MergeSortStep(keys).apply({ columns: cols, parts });
    merged = new LimitStep(limit, offset).apply(merged);

    // Expected: a stable sort of the shards' rows in shard order; ties therefore keep shard order.
    const expected = parts.flat().sort(compare).slice(Number(offset), limit === undefined ? undefined : Number(offset + limit));
    const got = merged.parts[0]!;
    const ids = (rs: Row[]) => rs.map((r) => show(r.values[3]));
    assert.equal(ids(got), ids(expected), `seed ${seed}, keys ${keys.map((k) => `${k.column} ${k.descending} ${k.nulls}`).join(", ")}`);
    for (let i = 1; i < got.length; i++) assert.ok(compare(got[i - 1]!, got[i]!) <= 0, `seed ${seed}: output sorted`);
  }
});

test.run();
