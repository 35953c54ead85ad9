// A key's placement text by its column's type, so one value is placed on one shard however it is
// written: for an integer column the integer's decimal text ('0123', ' 123 ', 123.0 and +123 are all
// "123", as ExecuteOnShard/Route and the SDK's bigint keys place it); for a uuid column the lowercase
// hyphenated form (PostgreSQL also reads upper case, braces and no hyphens). Any other type (text,
// varchar, numeric, …) keeps the text as written: PostgreSQL compares those as given.
import { Code, ConnectError } from "@connectrpc/connect";

/** A key column's base type (a domain's: its base type), as the catalog gives it. */
export interface KeyColumnType { name: string; oid: number }

/** Per integer type: its range, and how many digits any value of it surely fits in. */
const integerTypes: Record<number, { min: bigint; max: bigint; safeDigits: number }> = {
  21: { min: -(2n ** 15n), max: 2n ** 15n - 1n, safeDigits: 4 }, // int2
  23: { min: -(2n ** 31n), max: 2n ** 31n - 1n, safeDigits: 9 }, // int4
  20: { min: -(2n ** 63n), max: 2n ** 63n - 1n, safeDigits: 18 }, // int8
};
/** Decimal text already canonical (no sign but '-', no leading zero): an int64 parameter's. */
const plainInteger = /^(?:0|-?[1-9]\d*)$/;
const uuidOid = 2950;

/** The text `text` is placed by as a key of a column of `type` (undefined: not known, as written). */
export function canonicalKey(text: string, type: KeyColumnType | undefined, table: string, column: string): string {
  if (!type) return text;
  const int = integerTypes[type.oid];
  if (int) {
    // The hot path (an int64 parameter): already canonical, and short enough to be in range.
    if (text.length <= int.safeDigits && plainInteger.test(text)) return text;
    const n = integerOf(text);
    if (n === undefined || n < int.min || n > int.max) {
      throw new ConnectError(`${table}.${column} is ${type.name}: the key ${JSON.stringify(text)} is ${n === undefined ? "not an integer" : `out of range for ${type.name}`}, so no row has it`, Code.InvalidArgument);
    }
    return n.toString();
  }
  if (type.oid === uuidOid) {
    const u = uuidOf(text);
    if (u === undefined) throw new ConnectError(`${table}.${column} is uuid: the key ${JSON.stringify(text)} is not a uuid`, Code.InvalidArgument);
    return u;
  }
  return text;
}

const decimalInteger = /^[+-]?(?:\d+(?:_\d+)*|0[xX][0-9a-fA-F]+(?:_[0-9a-fA-F]+)*|0[oO][0-7]+(?:_[0-7]+)*|0[bB][01]+(?:_[01]+)*)$/;
const decimalNumber = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

/**
 * The integer a key's text means: what PostgreSQL's integer input reads (surrounding whitespace, a
 * sign, leading zeros; underscores and 0x/0o/0b as PostgreSQL 16 reads them), or a numeric whose value
 * is integral (123.0, 1.23e2: a numeric constant or parameter compared with the column). Undefined
 * when it is no integer.
 */
export function integerOf(text: string): bigint | undefined {
  const s = text.replace(/^[ \t\n\r\v\f]+|[ \t\n\r\v\f]+$/g, "");
  if (decimalInteger.test(s)) {
    const negative = s.startsWith("-");
    const body = s.replace(/^[+-]/, "").replace(/_/g, "");
    const n = BigInt(body); // BigInt reads 0x, 0o and 0b prefixes itself
    return negative ? -n : n;
  }
  const m = decimalNumber.exec(s);
  if (!m || (m[2] === "" && (m[3] ?? "") === "")) return undefined;
  const [, sign, whole, fraction = "", exp = "0"] = m;
  const e = Number(exp);
  if (!Number.isSafeInteger(e) || Math.abs(e) > 1000) return undefined; // far outside every integer type
  let digits = (whole + fraction).replace(/^0+/, "");
  let scale = fraction.length - e; // value = digits × 10^-scale
  if (digits === "") return 0n;
  while (scale > 0 && digits.endsWith("0")) { digits = digits.slice(0, -1); scale--; }
  if (scale > 0) return undefined; // a fraction remains
  const n = BigInt(digits + "0".repeat(-scale));
  return sign === "-" ? -n : n;
}

/** The lowercase hyphenated form of a uuid as PostgreSQL reads it; undefined when it is none. */
export function uuidOf(text: string): string | undefined {
  const s = text.startsWith("{") && text.endsWith("}") ? text.slice(1, -1) : text;
  // PostgreSQL allows a hyphen after any group of four hex digits.
  if (!/^[0-9a-fA-F]{4}(?:-?[0-9a-fA-F]{4}){7}$/.test(s)) return undefined;
  const h = s.replace(/-/g, "").toLowerCase();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
