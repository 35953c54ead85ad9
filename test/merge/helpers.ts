// Builders and a compact printer for merge tests (not a test file: the runner only picks *.test.ts).
import { create } from "@bufbuild/protobuf";
import { NullValue, TimestampSchema } from "@bufbuild/protobuf/wkt";
import { ConnectError, type Code } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import { NullsOrder, OrderBySchema, type OrderBy } from "../../gen/shardrouter/v1/router_pb.js";
import {
  type Column,
  ColumnSchema,
  type Row,
  RowSchema,
  type Value,
  ValueListSchema,
  ValueSchema,
} from "../../gen/shardrouter/v1/value_pb.js";

export const v = {
  null: (): Value => create(ValueSchema, { kind: { case: "nullValue", value: NullValue.NULL_VALUE } }),
  unset: (): Value => create(ValueSchema),
  int: (n: bigint | number): Value => create(ValueSchema, { kind: { case: "int64Value", value: BigInt(n) } }),
  dbl: (n: number): Value => create(ValueSchema, { kind: { case: "doubleValue", value: n } }),
  num: (s: string): Value => create(ValueSchema, { kind: { case: "numericValue", value: s } }),
  str: (s: string): Value => create(ValueSchema, { kind: { case: "stringValue", value: s } }),
  bool: (b: boolean): Value => create(ValueSchema, { kind: { case: "boolValue", value: b } }),
  bytes: (...b: number[]): Value => create(ValueSchema, { kind: { case: "bytesValue", value: new Uint8Array(b) } }),
  ts: (seconds: bigint, nanos = 0): Value =>
    create(ValueSchema, { kind: { case: "timestampValue", value: create(TimestampSchema, { seconds, nanos }) } }),
  date: (s: string): Value => create(ValueSchema, { kind: { case: "dateValue", value: s } }),
  uuid: (s: string): Value => create(ValueSchema, { kind: { case: "uuidValue", value: s } }),
  json: (s: string): Value => create(ValueSchema, { kind: { case: "jsonValue", value: s } }),
  arr: (...values: Value[]): Value =>
    create(ValueSchema, { kind: { case: "arrayValue", value: create(ValueListSchema, { values }) } }),
};

export function col(name: string, type = "int8", typeOid = 20): Column {
  return create(ColumnSchema, { name, type, typeOid });
}

export function row(...values: Value[]): Row {
  return create(RowSchema, { values });
}

/** Rows from plain cells: number/bigint -> int64, string -> text, null -> NULL, Value as is. */
export function rows(...cells: Array<Array<number | bigint | string | null | Value>>): Row[] {
  return cells.map((cs) => row(...cs.map(cell)));
}

function cell(c: number | bigint | string | null | Value): Value {
  if (c === null) return v.null();
  if (typeof c === "number" || typeof c === "bigint") return v.int(c);
  if (typeof c === "string") return v.str(c);
  return c;
}

export function order(column: string, descending = false, nulls = NullsOrder.UNSPECIFIED): OrderBy {
  return create(OrderBySchema, { column, descending, nulls });
}

/** A value as short text: 5, 5.5d, "0.3"n, 'abc', NULL, true, \x0102, ... */
export function show(x: Value | undefined): string {
  if (x === undefined) return "<missing>";
  const k = x.kind;
  switch (k.case) {
    case undefined: case "nullValue": return "NULL";
    case "int64Value": return String(k.value);
    case "doubleValue": return `${Object.is(k.value, -0) ? "-0" : k.value}d`;
    case "numericValue": return `${k.value}n`;
    case "stringValue": return `'${k.value}'`;
    case "boolValue": return String(k.value);
    case "bytesValue": return `\\x${Buffer.from(k.value).toString("hex")}`;
    case "timestampValue": return `ts(${k.value.seconds},${k.value.nanos})`;
    case "dateValue": return `date(${k.value})`;
    case "uuidValue": return `uuid(${k.value})`;
    case "jsonValue": return `json(${k.value})`;
    case "arrayValue": return `{${k.value.values.map(show).join(",")}}`;
  }
}

/** Rows as arrays of show() text, for assert.equal. */
export function table(rs: Row[]): string[][] {
  return rs.map((r) => r.values.map(show));
}

/** Asserts fn throws a ConnectError with this code whose raw message matches. */
export function throwsConnect(fn: () => unknown, code: Code, message: string | RegExp): ConnectError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConnectError, `expected a ConnectError, got ${String(e)}`);
    const err = e as ConnectError;
    assert.is(err.code, code, `code of "${err.rawMessage}"`);
    if (typeof message === "string") assert.is(err.rawMessage, message);
    else assert.match(err.rawMessage, message);
    return err;
  }
  assert.unreachable("expected a ConnectError");
  throw new Error("unreachable");
}

/** Deterministic PRNG (mulberry32) so a failing property test can be replayed from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
