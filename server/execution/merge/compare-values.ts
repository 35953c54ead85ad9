// Ordering of typed result values, matching what Postgres' own ORDER BY produced on each shard, so the
// k-way merge interleaves shard results exactly as one big database would have sorted them.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Row, Value } from "../../../gen/shardrouter/v1/value_pb.js";
import { formatDecimal, parseDecimal } from "./decimal.js";

/** NULL is either an explicit nullValue or an unset oneof (or a missing cell in a short row). */
export function isNull(v: Value | undefined): boolean {
  return v === undefined || v.kind.case === undefined || v.kind.case === "nullValue";
}

/**
 * Total order of two values of the same column: negative, zero or positive.
 * Meant for non-null values; a NULL is placed above every value (Postgres' default), but ORDER BY's
 * NULLS FIRST/LAST is applied by compareRows, not here.
 */
export function compareValues(a: Value, b: Value): number {
  if (isNull(a) || isNull(b)) return (isNull(a) ? 1 : 0) - (isNull(b) ? 1 : 0);
  return compareNonNull(a, b);
}

function compareNonNull(a: Value, b: Value): number {
  const ka = a.kind;
  const kb = b.kind;
  if (ka.case !== kb.case) {
    if (isNumericKind(ka.case) && isNumericKind(kb.case)) return compareMixedNumbers(a, b);
    throw new ConnectError(`cannot compare a ${ka.case} with a ${kb.case} in one column`, Code.Internal);
  }
  switch (ka.case) {
    case "int64Value":
      return cmp(ka.value, kb.value as bigint);
    case "doubleValue":
      return compareDoubles(ka.value, kb.value as number);
    case "numericValue":
      return compareNumericText(ka.value, kb.value as string);
    case "stringValue":
    case "jsonValue": // json(b) text, not jsonb's own ordering: documented limitation
      return compareCodePoints(ka.value, kb.value as string);
    case "uuidValue": // Postgres compares the 16 bytes; lowercase hex text sorts the same way
      return compareCodePoints(ka.value.toLowerCase(), (kb.value as string).toLowerCase());
    case "boolValue":
      return Number(ka.value) - Number(kb.value as boolean);
    case "bytesValue":
      return compareBytes(ka.value, kb.value as Uint8Array);
    case "timestampValue": {
      const tb = kb.value as typeof ka.value;
      return cmp(ka.value.seconds, tb.seconds) || cmp(ka.value.nanos, tb.nanos);
    }
    case "dateValue":
      return compareDates(ka.value, kb.value as string);
    case "arrayValue":
      return compareArrays(ka.value.values, (kb.value as typeof ka.value).values);
  }
  return 0;
}

/** One ORDER BY key bound to a column position. */
export interface ResolvedOrder {
  column: string;
  index: number;
  descending: boolean;
  /** Already defaulted: Postgres puts NULLs last ascending and first descending. */
  nullsFirst: boolean;
}

/** Compares two rows on one key, honouring direction and NULL placement. */
export function compareKey(key: ResolvedOrder, a: Row, b: Row): number {
  const va = a.values[key.index];
  const vb = b.values[key.index];
  const na = isNull(va);
  const nb = isNull(vb);
  if (na || nb) {
    if (na && nb) return 0;
    return na === key.nullsFirst ? -1 : 1; // NULLS FIRST/LAST is absolute, not flipped by DESC
  }
  const c = compareNonNull(va!, vb!);
  return key.descending ? -c : c;
}

/** Row comparator for a multi-column ORDER BY. */
export function compareRows(order: readonly ResolvedOrder[]): (a: Row, b: Row) => number {
  if (order.length === 1) {
    const key = order[0]!;
    return (a, b) => compareKey(key, a, b);
  }
  return (a, b) => {
    for (const key of order) {
      const c = compareKey(key, a, b);
      if (c !== 0) return c;
    }
    return 0;
  };
}

function cmp<T extends bigint | number>(a: T, b: T): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function isNumericKind(c: Value["kind"]["case"]): boolean {
  return c === "int64Value" || c === "doubleValue" || c === "numericValue";
}

/** float8 order: NaN equals NaN and sorts above +Infinity; -0 equals 0 (plain `<` already agrees). */
function compareDoubles(a: number, b: number): number {
  if (a < b) return -1;
  if (a > b) return 1;
  if (a === b) return 0;
  return Number(Number.isNaN(a)) - Number(Number.isNaN(b));
}

/**
 * Text in code point order = UTF-8 byte order = Postgres' C collation. JS `<` compares UTF-16 code units,
 * which puts astral characters (surrogate pairs, 0xD800-0xDFFF) below U+E000..U+FFFF; we fix up only
 * the first differing unit, so the common case stays a tight loop without allocation.
 */
export function compareCodePoints(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(i);
    if (ca !== cb) return codePointRank(ca) - codePointRank(cb);
  }
  return a.length - b.length;
}

// Moves surrogates above U+E000..U+FFFF while keeping each range's internal order.
function codePointRank(unit: number): number {
  if (unit < 0xd800) return unit;
  return unit < 0xe000 ? unit + 0x2000 : unit - 0x800;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i]! - b[i]!;
  }
  return a.length - b.length;
}

/** Postgres array order: element by element (NULL elements above values), then the shorter first. */
function compareArrays(a: Value[], b: Value[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const c = compareValues(a[i]!, b[i]!);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

/** "YYYY-MM-DD" (ISO DateStyle); also "infinity"/"-infinity", years past 9999 and "... BC". */
function compareDates(a: string, b: string): number {
  // Fast path: two plain 4-digit-year dates sort as text.
  if (a.length === 10 && b.length === 10 && a.charCodeAt(0) <= 0x39 && b.charCodeAt(0) <= 0x39) {
    return a < b ? -1 : a > b ? 1 : 0;
  }
  const [ra, ya, ma, da] = dateParts(a);
  const [rb, yb, mb, db] = dateParts(b);
  return ra - rb || ya - yb || ma - mb || da - db;
}

function dateParts(s: string): [rank: number, year: number, month: number, day: number] {
  if (s === "-infinity") return [-1, 0, 0, 0];
  if (s === "infinity") return [1, 0, 0, 0];
  const m = /^(\d+)-(\d\d)-(\d\d)( BC)?$/.exec(s);
  if (!m) throw new ConnectError(`invalid date value "${s}" in a shard result`, Code.Internal);
  const year = Number(m[1]);
  return [0, m[4] ? 1 - year : year, Number(m[2]), Number(m[3])]; // 1 BC is astronomical year 0
}

// ---- numeric text -------------------------------------------------------------------------------

// Special values rank around the finite ones: -Infinity < numbers < Infinity < NaN.
function specialRank(s: string): number {
  const c = s.charCodeAt(0);
  if (c <= 0x39 && c !== 0x2d) return 0; // a digit, ".", "+": the common case, decided by one char
  return s === "-Infinity" ? -1 : s === "Infinity" ? 1 : s === "NaN" ? 2 : 0;
}

/**
 * Exact comparison of two Postgres numeric texts of any length, by digits rather than BigInt and without
 * allocating, since it runs in the merge's inner loop: sign, then integer digit count, then the digits.
 */
export function compareNumericText(a: string, b: string): number {
  if (a === b) return 0;
  const sa = specialRank(a);
  const sb = specialRank(b);
  if (sa !== 0 || sb !== 0) return sa - sb;
  if (!scanDecimal(a, X) || !scanDecimal(b, Y)) {
    // Rare: an exponent form (Postgres never prints one) is rewritten through the exact parser first.
    return compareNumericText(formatDecimal(parseDecimal(a)), formatDecimal(parseDecimal(b)));
  }
  if (X.negative !== Y.negative) return X.negative ? -1 : 1;
  const magnitude = compareMagnitude(a, b);
  return X.negative ? -magnitude : magnitude;
}

/** Where the significant digits of a numeric text are; zero counts as positive. */
interface DecimalScan { negative: boolean; intStart: number; dot: number; fracEnd: number }
const X: DecimalScan = { negative: false, intStart: 0, dot: 0, fracEnd: 0 };
const Y: DecimalScan = { negative: false, intStart: 0, dot: 0, fracEnd: 0 };

/** Fills `out` (leading zeros skipped, trailing fraction zeros cut); false for an exponent form. */
function scanDecimal(s: string, out: DecimalScan): boolean {
  const n = s.length;
  let i = 0;
  const c0 = s.charCodeAt(0);
  if (c0 === 0x2d || c0 === 0x2b) i = 1; // - +
  const signEnd = i;
  while (i < n && s.charCodeAt(i) === 0x30) i++;
  out.intStart = i;
  while (i < n && isDigit(s.charCodeAt(i))) i++;
  out.dot = i;
  let fracEnd = i;
  if (i < n && s.charCodeAt(i) === 0x2e) {
    for (i++; i < n && isDigit(s.charCodeAt(i)); i++) if (s.charCodeAt(i) !== 0x30) fracEnd = i + 1;
  }
  out.fracEnd = fracEnd;
  if (i < n || n === signEnd || (n === signEnd + 1 && s.charCodeAt(signEnd) === 0x2e)) {
    if (i < n && (s.charCodeAt(i) === 0x65 || s.charCodeAt(i) === 0x45)) return false; // e E
    throw new ConnectError(`invalid numeric value "${s}" in a shard result`, Code.Internal);
  }
  out.negative = c0 === 0x2d && (out.dot > out.intStart || fracEnd > out.dot);
  return true;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

// |a| vs |b| from the scans in X and Y.
function compareMagnitude(a: string, b: string): number {
  const intLen = X.dot - X.intStart;
  if (intLen !== Y.dot - Y.intStart) return intLen - (Y.dot - Y.intStart);
  for (let k = 0; k < intLen; k++) {
    const d = a.charCodeAt(X.intStart + k) - b.charCodeAt(Y.intStart + k);
    if (d !== 0) return d;
  }
  // Fractions: digit by digit after the point; with trailing zeros cut, the longer one is larger.
  const fa = X.fracEnd > X.dot ? X.fracEnd - X.dot - 1 : 0;
  const fb = Y.fracEnd > Y.dot ? Y.fracEnd - Y.dot - 1 : 0;
  for (let k = 0, m = Math.min(fa, fb); k < m; k++) {
    const d = a.charCodeAt(X.dot + 1 + k) - b.charCodeAt(Y.dot + 1 + k);
    if (d !== 0) return d;
  }
  return fa - fb;
}

// ---- int64 / double / numeric mixed in one column ------------------------------------------------

/** An exact rational num/den (den > 0), or a special value rank (-1 -Infinity, 1 Infinity, 2 NaN). */
interface Exact { rank: number; num: bigint; den: bigint }

function compareMixedNumbers(a: Value, b: Value): number {
  const x = toExact(a);
  const y = toExact(b);
  if (x.rank !== 0 || y.rank !== 0) return x.rank - y.rank;
  return cmp(x.num * y.den, y.num * x.den);
}

function toExact(v: Value): Exact {
  switch (v.kind.case) {
    case "int64Value":
      return { rank: 0, num: v.kind.value, den: 1n };
    case "numericValue": {
      const d = parseDecimal(v.kind.value);
      if (d.special) return { rank: specialRank(d.special), num: 0n, den: 1n };
      return { rank: 0, num: d.unscaled, den: 10n ** BigInt(d.scale) };
    }
    case "doubleValue":
      return doubleToExact(v.kind.value);
    default:
      throw new ConnectError(`not a number: ${v.kind.case}`, Code.Internal);
  }
}

/** A finite double is exactly mantissa·2^exponent; read the IEEE bits rather than trusting its decimal text. */
function doubleToExact(d: number): Exact {
  if (Number.isNaN(d)) return { rank: 2, num: 0n, den: 1n };
  if (d === Infinity) return { rank: 1, num: 0n, den: 1n };
  if (d === -Infinity) return { rank: -1, num: 0n, den: 1n };
  if (Number.isInteger(d)) return { rank: 0, num: BigInt(d), den: 1n };
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, d);
  const hi = view.getUint32(0);
  const lo = view.getUint32(4);
  const biased = (hi >>> 20) & 0x7ff;
  let mantissa = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  if (biased !== 0) mantissa |= 1n << 52n;
  const exponent = (biased === 0 ? 1 : biased) - 1075; // non-integers always have exponent < 0 here
  return { rank: 0, num: hi >>> 31 ? -mantissa : mantissa, den: 1n << BigInt(-exponent) };
}
