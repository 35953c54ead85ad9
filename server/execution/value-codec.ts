// Value ⇄ Postgres text format. Parameters go out as text with an explicit type OID (or 0 to let the
// server infer it from context); cells come back as text and are decoded by column type, so int8,
// numeric and timestamps keep full precision.
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { type Value, ValueSchema } from "../../gen/shardrouter/v1/value_pb.js";
import { type ArrayItems, parseArrayLiteral } from "./array-literal.js";
import { Oid, arrayElementOf, kindOf, type ValueKind } from "./pg-types.js";

export interface EncodedParam { text: string | null; oid: number }

const arrayOidOf: Partial<Record<string, number>> = {
  boolValue: 1000, int64Value: 1016, doubleValue: 1022, numericValue: 1231, bytesValue: 1001,
  timestampValue: 1185, dateValue: 1182, uuidValue: 2951,
};

/** Encodes one parameter. `index` is 1-based, for error messages. */
export function encodeParam(value: Value | undefined, index: number): EncodedParam {
  const kind = value?.kind;
  switch (kind?.case) {
    case undefined:
    case "nullValue": return { text: null, oid: 0 };
    case "boolValue": return { text: kind.value ? "t" : "f", oid: Oid.bool };
    case "int64Value": return { text: kind.value.toString(), oid: Oid.int8 };
    case "doubleValue": return { text: formatDouble(kind.value), oid: Oid.float8 };
    // Strings and JSON are sent untyped: Postgres infers text, varchar, jsonb, ... from the statement.
    case "stringValue": return { text: kind.value, oid: 0 };
    case "jsonValue": return { text: kind.value, oid: 0 };
    case "bytesValue": return { text: "\\x" + Buffer.from(kind.value).toString("hex"), oid: Oid.bytea };
    case "numericValue": return { text: kind.value, oid: Oid.numeric };
    case "timestampValue": return { text: formatTimestamp(kind.value.seconds, kind.value.nanos), oid: Oid.timestamptz };
    case "dateValue": return { text: kind.value, oid: Oid.date };
    case "uuidValue": return { text: kind.value, oid: Oid.uuid };
    case "arrayValue": return { text: arrayLiteral(kind.value.values, index), oid: arrayOid(kind.value.values) };
  }
  throw new ConnectError(`parameter $${index} has an unsupported value kind`, Code.InvalidArgument);
}

function formatDouble(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "Infinity";
  if (x === -Infinity) return "-Infinity";
  return String(x);
}

/** RFC 3339 with microseconds; Postgres keeps microseconds, so finer nanos are truncated. */
function formatTimestamp(seconds: bigint, nanos: number): string {
  const ms = Number(seconds) * 1000;
  const iso = new Date(ms).toISOString(); // YYYY-MM-DDTHH:MM:SS.000Z (or ±YYYYYY for far years)
  if (Number.isNaN(ms) || iso === "Invalid Date") throw new ConnectError("timestamp parameter out of range", Code.InvalidArgument);
  return `${iso.slice(0, -5)}.${String(Math.trunc(nanos / 1000)).padStart(6, "0")}Z`;
}

function arrayOid(values: Value[]): number {
  const first = values.find((v) => v.kind.case !== undefined && v.kind.case !== "nullValue");
  return (first && arrayOidOf[first.kind.case as string]) ?? 0;
}

function arrayLiteral(values: Value[], index: number): string {
  const items = values.map((v) => {
    if (v.kind.case === "arrayValue") return arrayLiteral(v.kind.value.values, index);
    const { text } = encodeParam(v, index);
    return text === null ? "NULL" : `"${text.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
  });
  return `{${items.join(",")}}`;
}

export type CellDecoder = (cell: unknown) => Value;

const nullValue = (): Value => create(ValueSchema, { kind: { case: "nullValue", value: 0 } });

/** Builds the decoder for one column type. Cells arrive as Postgres text, arrays included. */
export function decoderFor(oid: number): CellDecoder {
  const element = arrayElementOf(oid);
  if (element !== undefined) {
    const decodeElement = decoderFor(element);
    const decodeItems = (items: ArrayItems): Value => create(ValueSchema, {
      kind: { case: "arrayValue", value: { values: items.map((c) => (Array.isArray(c) ? decodeItems(c) : decodeElement(c))) } },
    });
    return (cell) => (cell === null || cell === undefined ? nullValue() : decodeItems(parseArrayLiteral(String(cell))));
  }
  const decode = scalarDecoders[kindOf(oid)];
  return (cell) => (cell === null || cell === undefined ? nullValue() : decode(String(cell)));
}

const text = (s: string): Value => create(ValueSchema, { kind: { case: "stringValue", value: s } });

const scalarDecoders: Record<ValueKind, (s: string) => Value> = {
  bool: (s) => create(ValueSchema, { kind: { case: "boolValue", value: s === "t" } }),
  int: (s) => create(ValueSchema, { kind: { case: "int64Value", value: BigInt(s) } }),
  float: (s) => create(ValueSchema, { kind: { case: "doubleValue", value: Number(s) } }),
  numeric: (s) => create(ValueSchema, { kind: { case: "numericValue", value: s } }),
  string: text,
  text,
  bytes: (s) => create(ValueSchema, { kind: { case: "bytesValue", value: Buffer.from(s.slice(2), "hex") } }),
  json: (s) => create(ValueSchema, { kind: { case: "jsonValue", value: s } }),
  date: (s) => create(ValueSchema, { kind: { case: "dateValue", value: s } }),
  uuid: (s) => create(ValueSchema, { kind: { case: "uuidValue", value: s } }),
  timestamp: decodeTimestamp,
};

// Sessions run with TimeZone=UTC and DateStyle=ISO, so timestamptz reads "2024-05-01 12:00:00.123456+00".
const timestampText = /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:([+-])(\d\d)(?::?(\d\d))?(?::(\d\d))?)?( BC)?$/;

function decodeTimestamp(s: string): Value {
  const m = timestampText.exec(s);
  // infinity, -infinity and BC dates have no google.protobuf.Timestamp: they travel as text.
  if (!m || m[12]) return text(s);
  const date = new Date(0);
  date.setUTCFullYear(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  date.setUTCHours(Number(m[4]), Number(m[5]), Number(m[6]), 0);
  let ms = date.getTime();
  if (m[8]) {
    const offset = (Number(m[9]) * 3600 + Number(m[10] ?? 0) * 60 + Number(m[11] ?? 0)) * 1000;
    ms -= m[8] === "+" ? offset : -offset;
  }
  const micros = Number((m[7] ?? "").padEnd(6, "0"));
  const ts = timestampFromMs(ms);
  ts.nanos = micros * 1000;
  return create(ValueSchema, { kind: { case: "timestampValue", value: ts } });
}
