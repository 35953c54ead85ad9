import { Code } from "@connectrpc/connect";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { addDecimal, divideDecimal, divisionScale, formatDecimal, parseDecimal } from "../../server/execution/merge/decimal.js";
import { throwsConnect } from "./helpers.js";

const add = (a: string, b: string) => formatDecimal(addDecimal(parseDecimal(a), parseDecimal(b)));
const div = (a: string, b: string, scale: number) => formatDecimal(divideDecimal(parseDecimal(a), parseDecimal(b), scale));

test("parse/format round-trips Postgres numeric text", () => {
  for (const s of ["0", "123", "-0.05", "0.30", "12345678901234567890.0001", "-99999999999999999999999999999999999999.5", "NaN", "Infinity", "-Infinity"]) {
    assert.is(formatDecimal(parseDecimal(s)), s);
  }
  assert.is(formatDecimal(parseDecimal(".5")), "0.5");
  assert.is(formatDecimal(parseDecimal("+7.")), "7");
  assert.is(formatDecimal(parseDecimal("-0.00")), "0.00");
  assert.is(formatDecimal(parseDecimal("1e3")), "1000");
  assert.is(formatDecimal(parseDecimal("1.5e-2")), "0.015");
});

test("invalid text is rejected", () => {
  for (const s of ["", "-", ".", "1.2.3", "abc", "1,5", " 1"]) {
    throwsConnect(() => parseDecimal(s), Code.Internal, /invalid numeric value/);
  }
});

test("add is exact and keeps the larger scale", () => {
  assert.is(add("0.1", "0.2"), "0.3");
  assert.is(add("0.10", "0.2"), "0.30");
  assert.is(add("-5.5", "2.25"), "-3.25");
  assert.is(add("-0.1", "0.1"), "0.0");
  assert.is(add("99999999999999999999999999999999999999", "1"), "100000000000000000000000000000000000000");
  assert.is(add("9223372036854775807", "9223372036854775807"), "18446744073709551614");
  assert.is(add("0.000000000000000000000000000001", "1"), "1.000000000000000000000000000001");
});

test("add with special values follows Postgres", () => {
  assert.is(add("Infinity", "5"), "Infinity");
  assert.is(add("-3", "-Infinity"), "-Infinity");
  assert.is(add("Infinity", "Infinity"), "Infinity");
  assert.is(add("Infinity", "-Infinity"), "NaN");
  assert.is(add("NaN", "1"), "NaN");
  assert.is(add("-Infinity", "NaN"), "NaN");
});

test("divide rounds half away from zero at the requested scale", () => {
  assert.is(div("1", "3", 16), "0.3333333333333333");
  assert.is(div("2", "3", 16), "0.6666666666666667");
  assert.is(div("-2", "3", 16), "-0.6666666666666667");
  assert.is(div("2", "-3", 4), "-0.6667");
  assert.is(div("-2", "-3", 4), "0.6667");
  assert.is(div("5", "2", 0), "3");
  assert.is(div("-5", "2", 0), "-3");
  assert.is(div("4", "2", 0), "2");
  assert.is(div("10", "4", 16), "2.5000000000000000");
  assert.is(div("0.30", "3", 2), "0.10");
  // Scale of the inputs larger than the requested scale: the dividend is rounded, not truncated.
  assert.is(div("0.123456", "1", 3), "0.123");
  assert.is(div("0.1235", "1", 3), "0.124");
  assert.is(div("123456789012345678901234567890", "7", 16), "17636684144620811271604938270.0000000000000000");
});

test("divide with special values and by zero", () => {
  assert.is(div("Infinity", "3", 16), "Infinity");
  assert.is(div("Infinity", "-3", 16), "-Infinity");
  assert.is(div("-Infinity", "-3", 16), "Infinity");
  assert.is(div("1", "Infinity", 2), "0.00");
  assert.is(div("Infinity", "Infinity", 2), "NaN");
  assert.is(div("NaN", "3", 2), "NaN");
  throwsConnect(() => div("1", "0", 2), Code.Internal, "division by zero");
  throwsConnect(() => div("Infinity", "0", 2), Code.Internal, "division by zero");
});

test("division scale is Postgres' (select_div_scale): avg's digits, as psql shows them", () => {
  const avg = (sum: string, count: string) => {
    const [a, b] = [parseDecimal(sum), parseDecimal(count)];
    return formatDecimal(divideDecimal(a, b, divisionScale(a, b)));
  };
  // Each expected value is what PostgreSQL 17 printed for avg() over the rows in the comment.
  assert.is(avg("1", "2"), "0.50000000000000000000");          // select avg(x) from (values (0), (1))
  assert.is(avg("3", "2"), "1.5000000000000000");              // (1), (2)
  assert.is(avg("0", "3"), "0.00000000000000000000");          // (0), (0), (0)
  assert.is(avg("20000", "2"), "10000.0000000000000000");      // (10000), (10000)
  assert.is(avg("1.125", "1"), "1.12500000000000000000");      // (1.125)
  assert.is(avg("-7", "3"), "-2.3333333333333333");             // (-7), (0), (0)
  assert.is(avg("2.00000000000000000001", "2"), "1.00000000000000000001"); // (2.00000000000000000001), (0)
});

test.run();
