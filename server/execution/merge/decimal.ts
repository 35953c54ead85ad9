// Exact decimal arithmetic for re-aggregating Postgres numeric values (SUM, AVG), which travel as text.
// A float would silently lose digits ("0.1" + "0.2"), so values are BigInt integers scaled by 10^scale.
import { Code, ConnectError } from "@connectrpc/connect";

/** A finite decimal `unscaled / 10^scale`, or one of Postgres numeric's special values. */
export type Decimal =
  | { readonly special?: undefined; readonly unscaled: bigint; readonly scale: number }
  | { readonly special: "NaN" | "Infinity" | "-Infinity" };

const NAN: Decimal = { special: "NaN" };
const POS_INF: Decimal = { special: "Infinity" };
const NEG_INF: Decimal = { special: "-Infinity" };

// Postgres never prints an exponent for numeric, but accepting one costs nothing and keeps us honest.
const DECIMAL_TEXT = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

/** Parses Postgres numeric text ("-12.50", "NaN", "Infinity", "-Infinity"). */
export function parseDecimal(text: string): Decimal {
  switch (text) {
    case "NaN": return NAN;
    case "Infinity": case "+Infinity": return POS_INF;
    case "-Infinity": return NEG_INF;
  }
  const m = DECIMAL_TEXT.exec(text);
  if (!m || (m[2] === "" && (m[3] ?? "") === "")) {
    throw new ConnectError(`invalid numeric value "${text}" in a shard result`, Code.Internal);
  }
  const frac = m[3] ?? "";
  let scale = frac.length - (m[4] ? Number(m[4]) : 0);
  let unscaled = BigInt((m[2] || "0") + frac);
  if (scale < 0) {
    unscaled *= 10n ** BigInt(-scale);
    scale = 0;
  }
  return { unscaled: m[1] === "-" ? -unscaled : unscaled, scale };
}

/** Formats like Postgres numeric output: no exponent, exactly `scale` digits after the point. */
export function formatDecimal(d: Decimal): string {
  if (d.special) return d.special;
  const negative = d.unscaled < 0n;
  const digits = (negative ? -d.unscaled : d.unscaled).toString().padStart(d.scale + 1, "0");
  const sign = negative ? "-" : "";
  if (d.scale === 0) return sign + digits;
  return `${sign}${digits.slice(0, -d.scale)}.${digits.slice(-d.scale)}`;
}

export function decimalFromBigInt(n: bigint): Decimal {
  return { unscaled: n, scale: 0 };
}

/** Exact a + b; the result keeps the larger scale, as Postgres' numeric addition does ("0.10" + "0.2" = "0.30"). */
export function addDecimal(a: Decimal, b: Decimal): Decimal {
  if (a.special || b.special) {
    if (a.special === "NaN" || b.special === "NaN") return NAN;
    if (a.special && b.special && a.special !== b.special) return NAN; // Infinity + -Infinity
    return a.special ? a : b;
  }
  if (a.scale === b.scale) return { unscaled: a.unscaled + b.unscaled, scale: a.scale };
  return a.scale > b.scale
    ? { unscaled: a.unscaled + b.unscaled * 10n ** BigInt(a.scale - b.scale), scale: a.scale }
    : { unscaled: a.unscaled * 10n ** BigInt(b.scale - a.scale) + b.unscaled, scale: b.scale };
}

/**
 * a / b rounded to `scale` digits after the point, half away from zero (Postgres' numeric rounding).
 * Division by zero throws: callers (AVG) check for a zero count first and produce NULL.
 */
export function divideDecimal(a: Decimal, b: Decimal, scale: number): Decimal {
  if (a.special === "NaN" || b.special === "NaN") return NAN;
  if (a.special) {
    if (b.special) return NAN; // ±Infinity / ±Infinity
    if (b.unscaled === 0n) throw new ConnectError("division by zero", Code.Internal);
    return (a.special === "Infinity") === (b.unscaled > 0n) ? POS_INF : NEG_INF;
  }
  if (b.special) return { unscaled: 0n, scale };
  if (b.unscaled === 0n) throw new ConnectError("division by zero", Code.Internal);
  // a.unscaled/10^a.scale ÷ b.unscaled/10^b.scale = q/10^scale  ⇒  q = a.unscaled·10^(scale - a.scale + b.scale) / b.unscaled
  const shift = scale - a.scale + b.scale;
  let numerator = a.unscaled;
  let denominator = b.unscaled;
  if (shift >= 0) numerator *= 10n ** BigInt(shift);
  else denominator *= 10n ** BigInt(-shift);
  if (denominator < 0n) {
    numerator = -numerator;
    denominator = -denominator;
  }
  let quotient = numerator / denominator; // truncates toward zero
  const remainder = numerator % denominator; // same sign as numerator
  if (2n * (remainder < 0n ? -remainder : remainder) >= denominator) quotient += numerator < 0n ? -1n : 1n;
  return { unscaled: quotient, scale };
}

/**
 * The scale Postgres gives a numeric division a / b (select_div_scale in numeric.c): enough digits
 * for at least 16 significant ones in the quotient, and never fewer than either input shows.
 * Postgres counts in base-10000 digits; weight is the position of the first non-zero one.
 */
export function divisionScale(a: Decimal, b: Decimal): number {
  const minSignificant = 16;
  const [weightA, firstA] = leadingBase10000(a);
  const [weightB, firstB] = leadingBase10000(b);
  let quotientWeight = weightA - weightB;
  if (firstA <= firstB) quotientWeight--; // equal first digits: assume a < b, as Postgres does
  let scale = minSignificant - quotientWeight * 4;
  scale = Math.max(scale, a.special ? 0 : a.scale, b.special ? 0 : b.scale, 0);
  return Math.min(scale, 1000);
}

/** Weight and value of the first non-zero base-10000 digit of |d|; [0, 0] for zero or a special value. */
function leadingBase10000(d: Decimal): [weight: number, digit: number] {
  if (d.special || d.unscaled === 0n) return [0, 0];
  const u = d.unscaled < 0n ? -d.unscaled : d.unscaled;
  const exponent = u.toString().length - 1 - d.scale; // power of ten of the leading decimal digit
  const weight = Math.floor(exponent / 4);
  const shift = d.scale + 4 * weight; // |d| / 10000^weight = u / 10^shift
  const digit = shift >= 0 ? (u / 10n ** BigInt(shift)) % 10000n : (u * 10n ** BigInt(-shift)) % 10000n;
  return [weight, Number(digit)];
}
