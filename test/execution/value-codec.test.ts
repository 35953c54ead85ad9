import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { type Value, ValueSchema } from "../../gen/shardrouter/v1/value_pb.js";
import { Oid } from "../../server/execution/pg-types.js";
import { decoderFor, encodeParam } from "../../server/execution/value-codec.js";

const v = (kind: Value["kind"]) => create(ValueSchema, { kind });

test("parameters carry an explicit type where the value has one", () => {
  assert.equal(encodeParam(v({ case: "int64Value", value: 9007199254740993n }), 1), { text: "9007199254740993", oid: Oid.int8 });
  assert.equal(encodeParam(v({ case: "boolValue", value: false }), 1), { text: "f", oid: Oid.bool });
  assert.equal(encodeParam(v({ case: "doubleValue", value: NaN }), 1), { text: "NaN", oid: Oid.float8 });
  assert.equal(encodeParam(v({ case: "doubleValue", value: -Infinity }), 1), { text: "-Infinity", oid: Oid.float8 });
  assert.equal(encodeParam(v({ case: "stringValue", value: "x" }), 1), { text: "x", oid: 0 });
  assert.equal(encodeParam(v({ case: "bytesValue", value: new Uint8Array([0, 255]) }), 1), { text: "\\x00ff", oid: Oid.bytea });
  assert.equal(encodeParam(v({ case: "nullValue", value: 0 }), 1), { text: null, oid: 0 });
  assert.equal(encodeParam(undefined, 1), { text: null, oid: 0 });
  assert.equal(
    encodeParam(v({ case: "timestampValue", value: { $typeName: "google.protobuf.Timestamp", seconds: 1700000000n, nanos: 123456789 } }), 1),
    { text: "2023-11-14T22:13:20.123456Z", oid: Oid.timestamptz },
  );
});

test("array parameters become Postgres array literals with quoting", () => {
  const arr = v({ case: "arrayValue", value: { $typeName: "shardrouter.v1.ValueList", values: [
    v({ case: "stringValue", value: 'a"b' }), v({ case: "nullValue", value: 0 }), v({ case: "stringValue", value: "c\\d" }),
  ] } });
  assert.equal(encodeParam(arr, 1), { text: '{"a\\"b",NULL,"c\\\\d"}', oid: 0 });
  const ints = v({ case: "arrayValue", value: { $typeName: "shardrouter.v1.ValueList", values: [v({ case: "int64Value", value: 1n })] } });
  assert.is(encodeParam(ints, 1).oid, 1016);
});

test("cells decode by column type without losing precision", () => {
  assert.equal(decoderFor(Oid.int8)("9223372036854775807").kind, { case: "int64Value", value: 9223372036854775807n });
  assert.equal(decoderFor(Oid.numeric)("12345678901234567890.000000001").kind, { case: "numericValue", value: "12345678901234567890.000000001" });
  assert.equal(decoderFor(Oid.bool)("t").kind, { case: "boolValue", value: true });
  assert.equal(decoderFor(Oid.float8)("NaN").kind.case, "doubleValue");
  assert.equal(decoderFor(Oid.int4)(null).kind.case, "nullValue");
  assert.equal((decoderFor(Oid.bytea)("\\x00ff").kind.value as Uint8Array).length, 2);
  assert.equal(decoderFor(999999)("(1,2)").kind, { case: "stringValue", value: "(1,2)" }); // unknown type: text form
});

test("timestamps keep microseconds and honour the offset; infinity stays text", () => {
  const ts = decoderFor(Oid.timestamptz)("2024-05-01 12:00:00.123456+00").kind;
  assert.is(ts.case, "timestampValue");
  const value = ts.value as { seconds: bigint; nanos: number };
  assert.is(value.nanos, 123456000);
  assert.is(timestampDate(value as never).toISOString(), "2024-05-01T12:00:00.123Z");
  const shifted = decoderFor(Oid.timestamptz)("2024-05-01 12:00:00+05:30").kind.value as { seconds: bigint };
  assert.is(timestampDate(shifted as never).toISOString(), "2024-05-01T06:30:00.000Z");
  const old = decoderFor(Oid.timestamp)("0099-01-01 00:00:00").kind.value as { seconds: bigint };
  assert.is(timestampDate(old as never).toISOString(), "0099-01-01T00:00:00.000Z");
  assert.equal(decoderFor(Oid.timestamptz)("infinity").kind, { case: "stringValue", value: "infinity" });
});

test("arrays decode element by element, nested and with nulls", () => {
  const arr = decoderFor(1007)("{1,NULL,3}").kind;
  assert.is(arr.case, "arrayValue");
  const values = (arr.value as { values: Value[] }).values;
  assert.equal(values.map((x) => x.kind.case), ["int64Value", "nullValue", "int64Value"]);
  const nested = decoderFor(1009)("{{a},{b}}").kind.value as { values: Value[] };
  assert.is(nested.values[1].kind.case, "arrayValue");
  const texts = (decoderFor(1009)('{"NULL",NULL,"a \\"b\\"",",",""}').kind.value as { values: Value[] }).values;
  assert.equal(texts.map((v) => v.kind.value), ["NULL", 0, 'a "b"', ",", ""]); // a quoted "NULL" is text; NULL is null
  assert.equal(texts.map((v) => v.kind.case), ["stringValue", "nullValue", "stringValue", "stringValue", "stringValue"]);
  const bounded = (decoderFor(1007)("[0:1]={7,8}").kind.value as { values: Value[] }).values;
  assert.equal(bounded.map((v) => v.kind.value), [7n, 8n]);
});

test.run();
