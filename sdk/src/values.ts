// JS values ⇄ shardrouter.v1.Value, the router's typed SQL value. The rules are written out in
// sdk/README.md ("Types"); the short form:
//   parameters: null/undefined → NULL, boolean, bigint and safe-integer numbers → int8, other numbers
//   → float8, string → untyped text (Postgres infers), Date → timestamptz, Uint8Array → bytea,
//   arrays → arrays, plain objects → json; numeric(), json(), float(), uuid(), date(), timestamp()
//   say the type explicitly. Anything else is refused on the client before a request is sent.
//   cells: int8 → bigint, int2/int4 → number, numeric → string, timestamptz → Date (or RFC 3339 text with microseconds),
//   bytea → Uint8Array, json → parsed, date → "YYYY-MM-DD", uuid → string, arrays → arrays.
import { create, isMessage } from "@bufbuild/protobuf";
import { type Timestamp, TimestampSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { type Value, ValueListSchema, ValueSchema } from "./gen/shardrouter/v1/value_pb.ts";

/** A parameter whose SQL type is stated explicitly; made by numeric(), json(), float(), uuid(), date(), timestamp(). */
export interface TypedParam {
  readonly [typed]: Value;
}
const typed: unique symbol = Symbol("shardrouter.typedParam");

/** A plain object (its prototype is Object.prototype or null): sent as a json document. */
export type JsonObject = { readonly [key: string]: unknown };

export type SqlParam =
  | null | undefined | boolean | number | bigint | string | Date | Uint8Array
  | TypedParam | Value | readonly SqlParam[] | JsonObject;

/** How result cells are turned into JS. */
export interface DecodeOptions {
  /** "date" (default): a Date, millisecond precision. "string": RFC 3339 UTC text keeping Postgres' microseconds. */
  timestamps?: "date" | "string";
  /** "parse" (default): JSON.parse'd (numbers beyond 2^53 lose precision). "text": the document text as sent. */
  json?: "parse" | "text";
  /**
   * Your own parsing for a column type, keyed by Postgres type name ("numeric", "int8", "_numeric" for
   * numeric[]) or OID ("1700"). It gets the value as the SDK would return it (never null: NULL stays
   * null), e.g. `{ numeric: (v) => new Decimal(v as string), int8: (v) => Number(v) }`.
   */
  types?: Record<string, TypeParser>;
}

/** Turns one non-null cell of a column of that type into what you want; `type` names the column's type. */
export type TypeParser = (value: unknown, type: { name: string; oid: number }) => unknown;

const int64Min = -(2n ** 63n);
const int64Max = 2n ** 63n - 1n;

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

const make = (kind: Value["kind"]): Value => create(ValueSchema, { kind });
const wrap = (value: Value): TypedParam => Object.freeze({ [typed]: value });

/** An exact decimal (numeric), e.g. numeric("12.50"); a bigint or a safe integer is also accepted. */
export function numeric(value: string | bigint | number): TypedParam {
  const text = typeof value === "string" ? value.trim() : String(value);
  if (typeof value === "number" && !Number.isSafeInteger(value)) {
    throw invalid(`numeric(${value}): pass the exact decimal as a string, a number with a fraction is already rounded`);
  }
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^([+-]?Infinity|NaN)$/.test(text)) {
    throw invalid(`numeric(${JSON.stringify(text)}): not a decimal number`);
  }
  return wrap(make({ case: "numericValue", value: text }));
}

/** A json/jsonb document made with JSON.stringify (use it for arrays meant as one JSON document). */
export function json(value: unknown): TypedParam {
  return wrap(make({ case: "jsonValue", value: stringifyJson(value, "json()") }));
}

/** A float8 even when the number has no fraction (a plain integer number is sent as int8). */
export function float(value: number): TypedParam {
  if (typeof value !== "number") throw invalid(`float(${String(value)}): not a number`);
  return wrap(make({ case: "doubleValue", value }));
}

/** A uuid, checked for the canonical 8-4-4-4-12 hex form. */
export function uuid(text: string): TypedParam {
  if (typeof text !== "string" || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(text)) {
    throw invalid(`uuid(${JSON.stringify(text)}): not a uuid`);
  }
  return wrap(make({ case: "uuidValue", value: text.toLowerCase() }));
}

/** A calendar date: "YYYY-MM-DD", or the UTC date of a Date. */
export function date(value: string | Date): TypedParam {
  const text = value instanceof Date ? validDate(value, "date()").toISOString().slice(0, 10) : value;
  if (typeof text !== "string" || !/^\d{4}-\d\d-\d\d$/.test(text)) throw invalid(`date(${JSON.stringify(value)}): expected "YYYY-MM-DD"`);
  return wrap(make({ case: "dateValue", value: text }));
}

/** A timestamptz from a Date or from RFC 3339 text, which may carry microseconds ("…T12:00:00.123456Z"). */
export function timestamp(value: Date | string): TypedParam {
  return wrap(make({ case: "timestampValue", value: value instanceof Date ? timestampOfDate(validDate(value, "timestamp()")) : timestampOfText(value) }));
}

const rfc3339 = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/i;

function timestampOfText(text: string): Timestamp {
  const m = typeof text === "string" ? rfc3339.exec(text) : null;
  const ms = m ? Date.parse(`${m[1]}${m[3]}`) : NaN;
  if (!m || Number.isNaN(ms)) throw invalid(`timestamp(${JSON.stringify(text)}): expected RFC 3339 text like 2024-05-01T12:00:00.123456Z`);
  return create(TimestampSchema, { seconds: BigInt(ms / 1000), nanos: Number((m[2] ?? "").padEnd(9, "0")) });
}

function timestampOfDate(d: Date): Timestamp {
  const ms = d.getTime();
  const seconds = Math.floor(ms / 1000);
  return create(TimestampSchema, { seconds: BigInt(seconds), nanos: (ms - seconds * 1000) * 1_000_000 });
}

function validDate(d: Date, what: string): Date {
  if (Number.isNaN(d.getTime())) throw invalid(`${what}: Invalid Date`);
  return d;
}

function stringifyJson(value: unknown, what: string): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    // Circular structures and bigints: JSON.stringify throws a TypeError saying which.
    throw invalid(`${what}: cannot be sent as JSON: ${(err as Error).message}`);
  }
  if (text === undefined) throw invalid(`${what}: ${typeof value} has no JSON form`);
  return text;
}

function isPlainObject(x: object): x is JsonObject {
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

/** Encodes one statement parameter; `where` names it in errors ("parameter $2"). */
export function encodeParam(x: SqlParam, where: string): Value {
  switch (typeof x) {
    case "undefined": return make({ case: "nullValue", value: 0 });
    case "boolean": return make({ case: "boolValue", value: x });
    case "string": return make({ case: "stringValue", value: x });
    case "bigint":
      if (x < int64Min || x > int64Max) throw invalid(`${where}: ${x} does not fit in int8`);
      return make({ case: "int64Value", value: x });
    case "number":
      // Integers are int8 so `where id = $1` compares exactly; anything else (fractions, NaN,
      // ±Infinity, integers past 2^53 that a number cannot hold exactly) is float8.
      return Number.isSafeInteger(x) ? make({ case: "int64Value", value: BigInt(x) }) : make({ case: "doubleValue", value: x });
    case "object": {
      if (x === null) return make({ case: "nullValue", value: 0 });
      if (typed in x) return (x as TypedParam)[typed];
      if (isMessage(x, ValueSchema)) return x;
      if (x instanceof Date) return make({ case: "timestampValue", value: timestampOfDate(validDate(x, where)) });
      if (x instanceof Uint8Array) return make({ case: "bytesValue", value: x });
      if (Array.isArray(x)) return make({ case: "arrayValue", value: create(ValueListSchema, { values: x.map((e, i) => encodeParam(e, `${where}[${i}]`)) }) });
      if (isPlainObject(x)) return make({ case: "jsonValue", value: stringifyJson(x, where) });
      const name = (x as object).constructor?.name ?? "object";
      throw invalid(`${where}: cannot send a ${name} (not a plain object); convert it, or wrap it with json()`);
    }
    default:
      throw invalid(`${where}: cannot send a ${typeof x}`);
  }
}

export function encodeParams(params: readonly SqlParam[] | undefined): Value[] {
  if (params !== undefined && !Array.isArray(params)) throw invalid("params must be an array ($1 is params[0])");
  return (params ?? []).map((p, i) => encodeParam(p, `parameter $${i + 1}`));
}

/**
 * Decodes one cell. `smallInt`: the column is int2, int4 or oid (or an array of them), whose values
 * always fit a number; only int8 stays a bigint. Unknown types (interval, inet, enums …) arrive as text.
 */
export function decodeValue(v: Value | undefined, opts: DecodeOptions, smallInt = false): unknown {
  const kind = v?.kind;
  if (kind === undefined) return null;
  switch (kind.case) {
    case undefined: case "nullValue": return null;
    case "int64Value": return smallInt ? Number(kind.value) : kind.value;
    case "timestampValue": return opts.timestamps === "string" ? timestampText(kind.value) : timestampToDate(kind.value);
    case "jsonValue": return opts.json === "text" ? kind.value : JSON.parse(kind.value);
    case "arrayValue": return kind.value.values.map((e) => decodeValue(e, opts, smallInt));
    default: return kind.value; // bool, double, string, bytes, numeric, date, uuid
  }
}

/** Truncates to the millisecond (as Postgres' own drivers do), never rounds into the next one. */
function timestampToDate(ts: Timestamp): Date {
  return new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1_000_000));
}

function timestampText(ts: Timestamp): string {
  const iso = new Date(Number(ts.seconds) * 1000).toISOString();
  return `${iso.slice(0, -5)}.${String(Math.floor(ts.nanos / 1000)).padStart(6, "0")}Z`;
}
