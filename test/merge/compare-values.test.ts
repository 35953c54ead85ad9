import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { NullsOrder } from "../../gen/shardrouter/v1/router_pb.js";
import { ValueSchema, type Value } from "../../gen/shardrouter/v1/value_pb.js";
import { resolveOrder } from "../../server/execution/merge/columns.js";
import {
  compareCodePoints,
  compareNumericText,
  compareRows,
  compareValues,
  isNull,
} from "../../server/execution/merge/compare-values.js";
import { col, order, rows, show, table, throwsConnect, v } from "./helpers.js";

const sign = (n: number) => Math.sign(n);

/** Asserts `values` is strictly increasing under compareValues, checking every pair both ways. */
function ascending(values: Value[]): void {
  for (let i = 0; i < values.length; i++) {
    for (let j = 0; j < values.length; j++) {
      const got = sign(compareValues(values[i]!, values[j]!));
      assert.is(got, sign(i - j), `compare(${show(values[i])}, ${show(values[j])})`);
    }
  }
}

function equal(a: Value, b: Value): void {
  assert.is(compareValues(a, b), 0, `${show(a)} = ${show(b)}`);
  assert.is(compareValues(b, a), 0, `${show(b)} = ${show(a)}`);
}

test("isNull: nullValue, unset oneof and a missing cell are NULL", () => {
  assert.ok(isNull(v.null()));
  assert.ok(isNull(create(ValueSchema)));
  assert.ok(isNull(undefined));
  assert.not.ok(isNull(v.int(0)));
  assert.not.ok(isNull(v.str("")));
});

test("int64 compares as bigint beyond 2^53", () => {
  ascending([v.int(-(1n << 63n)), v.int(-1), v.int(0), v.int(9007199254740992n), v.int(9007199254740993n), v.int((1n << 63n) - 1n)]);
});

test("double: -Infinity lowest, NaN above Infinity, NaN = NaN, -0 = 0", () => {
  ascending([v.dbl(-Infinity), v.dbl(-1e308), v.dbl(-0.5), v.dbl(0), v.dbl(5e-324), v.dbl(1.5), v.dbl(Infinity), v.dbl(NaN)]);
  equal(v.dbl(NaN), v.dbl(NaN));
  equal(v.dbl(-0), v.dbl(0));
});

test("numeric text compares exactly at any length, with signs and specials", () => {
  const big = "1" + "0".repeat(400);
  ascending([
    v.num("-Infinity"),
    v.num("-" + big),
    v.num("-10"),
    v.num("-9.999"),
    v.num("-1.25"),
    v.num("-0.000000000000000000000000001"),
    v.num("0"),
    v.num("0.1"),
    v.num("0.10000000000000000000000000001"),
    v.num("0.2"),
    v.num("9.999"),
    v.num("10"),
    v.num("12345678901234567890.0001"),
    v.num("12345678901234567890.001"),
    v.num(big),
    v.num("Infinity"),
    v.num("NaN"),
  ]);
  equal(v.num("1.50"), v.num("1.5"));
  equal(v.num("007"), v.num("7.000"));
  equal(v.num("-0.000"), v.num("0"));
  equal(v.num("NaN"), v.num("NaN"));
  assert.is(sign(compareNumericText("1e3", "999.5")), 1);
});

test("invalid numeric text is an Internal error, not a silent order", () => {
  throwsConnect(() => compareNumericText("1.2.3", "1"), Code.Internal, /invalid numeric value/);
  throwsConnect(() => compareNumericText("-", "1"), Code.Internal, /invalid numeric value/);
});

test("int64, double and numeric mixed in one column compare numerically and exactly", () => {
  ascending([v.num("-Infinity"), v.int(-3), v.dbl(-2.5), v.num("0.1"), v.dbl(0.1), v.int(5), v.num("5.5"), v.dbl(6), v.int(9007199254740992n), v.int(9007199254740993n), v.dbl(Infinity), v.num("NaN")]);
  equal(v.int(5), v.num("5.000"));
  equal(v.int(5), v.dbl(5));
  equal(v.dbl(0.5), v.num("0.5"));
  equal(v.dbl(NaN), v.num("NaN"));
  equal(v.dbl(-Infinity), v.num("-Infinity"));
  // 2^53 + 1 is not a double: the int is above the double that JS would round it to.
  assert.is(sign(compareValues(v.int(9007199254740993n), v.dbl(9007199254740992))), 1);
});

test("text in code point order (C collation), not UTF-16 unit order", () => {
  const emoji = "\u{1F600}"; // surrogate pair D83D DE00
  const replacement = "\uFFFD";
  assert.ok(emoji < replacement, "JS < gets this wrong, which is why we do not use it");
  ascending([v.str(""), v.str("B"), v.str("a"), v.str("ab"), v.str("é"), v.str("\uE000"), v.str(replacement), v.str(emoji), v.str(emoji + "a"), v.str("\u{1F601}")]);
  assert.is(sign(compareCodePoints("x" + replacement, "x" + emoji)), -1);
  equal(v.str("same"), v.str("same"));
});

test("uuid ignores hex case; json compares as text", () => {
  equal(v.uuid("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"), v.uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
  ascending([v.uuid("00000000-0000-0000-0000-00000000000f"), v.uuid("a0000000-0000-0000-0000-000000000000")]);
  ascending([v.json('{"a":1}'), v.json('{"b":0}')]);
});

test("bytes lexicographic unsigned, shorter prefix first", () => {
  ascending([v.bytes(), v.bytes(0), v.bytes(1, 2), v.bytes(1, 2, 0), v.bytes(0x7f), v.bytes(0x80), v.bytes(0xff)]);
});

test("bool false < true", () => {
  ascending([v.bool(false), v.bool(true)]);
});

test("timestamps by seconds then nanos", () => {
  ascending([v.ts(-5n, 999_999_000), v.ts(0n), v.ts(0n, 1000), v.ts(1n), v.ts(1_700_000_000n, 500)]);
});

test("dates: -infinity, BC, ISO, five-digit years, infinity", () => {
  ascending([
    v.date("-infinity"),
    v.date("4713-01-01 BC"),
    v.date("0044-03-15 BC"),
    v.date("0001-12-31 BC"),
    v.date("0001-01-01"),
    v.date("1999-12-31"),
    v.date("2024-02-29"),
    v.date("9999-12-31"),
    v.date("10000-01-01"),
    v.date("infinity"),
  ]);
});

test("arrays element by element, then length; NULL elements above values", () => {
  ascending([v.arr(), v.arr(v.int(1)), v.arr(v.int(1), v.int(2)), v.arr(v.int(1), v.int(2), v.int(0)), v.arr(v.int(1), v.int(3)), v.arr(v.int(1), v.null())]);
});

test("values of unrelated kinds in one column are an error", () => {
  throwsConnect(() => compareValues(v.str("1"), v.int(1)), Code.Internal, /cannot compare a stringValue with a int64Value/);
});

test("compareRows: multi-column asc/desc with default and explicit NULL placement", () => {
  const columns = [col("a"), col("b", "text", 25)];
  const data = rows([1, "x"], [null, "y"], [2, null], [1, null], [1, "z"], [null, null], [2, "x"]);
  const sortBy = (...keys: ReturnType<typeof order>[]) =>
    table(data.slice().sort(compareRows(resolveOrder(keys, columns))));

  // Defaults: ASC -> NULLS LAST, DESC -> NULLS FIRST.
  assert.equal(sortBy(order("a"), order("b", true)), [
    ["1", "NULL"], ["1", "'z'"], ["1", "'x'"], ["2", "NULL"], ["2", "'x'"], ["NULL", "NULL"], ["NULL", "'y'"],
  ]);
  assert.equal(sortBy(order("a", true), order("b")), [
    ["NULL", "'y'"], ["NULL", "NULL"], ["2", "'x'"], ["2", "NULL"], ["1", "'x'"], ["1", "'z'"], ["1", "NULL"],
  ]);
  // Explicit placement overrides the default, independent of direction.
  assert.equal(sortBy(order("a", false, NullsOrder.FIRST), order("b", true, NullsOrder.LAST)), [
    ["NULL", "'y'"], ["NULL", "NULL"], ["1", "'z'"], ["1", "'x'"], ["1", "NULL"], ["2", "'x'"], ["2", "NULL"],
  ]);
  assert.equal(sortBy(order("a", true, NullsOrder.LAST), order("b", false, NullsOrder.FIRST)), [
    ["2", "NULL"], ["2", "'x'"], ["1", "NULL"], ["1", "'x'"], ["1", "'z'"], ["NULL", "NULL"], ["NULL", "'y'"],
  ]);
});

test("compareRows treats an unset Value and a short row as NULL", () => {
  const columns = [col("a"), col("b")];
  const cmp = compareRows(resolveOrder([order("b")], columns));
  const [withValue, unset, short] = rows([1, 5], [1, create(ValueSchema)], [1]);
  assert.is(cmp(withValue!, unset!), -1);
  assert.is(cmp(unset!, short!), 0);
});

test.run();
