// Ordered ranges on the key itself (not on its hash), for data queried by key intervals: range i owns
// keys >= bound[i-1] and < bound[i]; the first range is unbounded below, the last unbounded above,
// so every well-formed key has exactly one shard.
import { Code, ConnectError } from "@connectrpc/connect";
import { PlacementConfigError } from "./config-error.js";
import { keyspaceId } from "./murmur3.js";
import type { RangeConfig } from "./placement-config.js";
import { assertShardKey, quoteKey } from "./shard-key.js";
import type { Ownership, Placement, PlacementStrategy, ShardInfo } from "./strategy.js";

type Bound = bigint | string;

// Decimal text, optional minus sign: the same integers Postgres' int8 input accepts (minus spaces, '+').
const INTEGER = /^-?[0-9]+$/;

/** The integer a key or bound spells, or undefined when it is not one ("1.5", "abc", "", "1e3"). */
export function parseIntegerKey(text: string): bigint | undefined {
  return INTEGER.test(text) ? BigInt(text) : undefined;
}

/**
 * Compares by Unicode code point, which is also UTF-8 byte order and so Postgres' "C" collation.
 * JS `<` compares UTF-16 code units instead, which puts U+10000.. (surrogate pairs) *before*
 * U+E000..U+FFFF. At the first differing unit we shift the two bands back into code-point order.
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

function codePointRank(unit: number): number {
  if (unit < 0xd800) return unit;
  return unit >= 0xe000 ? unit - 0x800 : unit + 0x2000; // surrogates sort above the rest of the BMP
}

export class RangeStrategy implements PlacementStrategy {
  readonly name = "range";
  readonly keyType: "integer" | "string";
  /** bounds[i] is the exclusive upper bound of range i; the last range has none. */
  private readonly bounds: readonly Bound[];
  private readonly rangeShards: readonly string[];

  constructor(shards: readonly ShardInfo[], config: Pick<RangeConfig, "keyType" | "ranges">) {
    const { keyType, ranges } = config;
    if (ranges.length === 0) throw new PlacementConfigError("ranges", "needs at least one range");
    const known = new Set(shards.map((s) => s.name));
    const bounds: Bound[] = [];
    ranges.forEach((range, i) => {
      if (!known.has(range.shard)) throw PlacementConfigError.unknownShard(`ranges[${i}].shard`, range.shard, shards);
      const path = `ranges[${i}].lessThan`;
      const last = i === ranges.length - 1;
      if (last) {
        if (range.lessThan !== undefined) {
          throw new PlacementConfigError(path, "the last range must have no lessThan (it takes every key above the previous bound)");
        }
        return;
      }
      if (range.lessThan === undefined) throw new PlacementConfigError(path, "required on every range but the last");
      const bound = parseBound(range.lessThan, keyType, path);
      if (i > 0 && compareBounds(bounds[i - 1], bound) >= 0) {
        throw new PlacementConfigError(
          path,
          `bounds must increase: ${showBound(bound)} is not greater than ranges[${i - 1}].lessThan ${showBound(bounds[i - 1])}`,
        );
      }
      bounds.push(bound);
    });
    this.keyType = keyType;
    this.bounds = bounds;
    this.rangeShards = ranges.map((r) => r.shard);
  }

  place(key: string): Placement {
    assertShardKey(key);
    const value = this.keyValue(key);
    // First range whose bound is above the key; past every bound means the last (unbounded) range.
    let lo = 0;
    let hi = this.bounds.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareBounds(value, this.bounds[mid]) < 0) hi = mid;
      else lo = mid + 1;
    }
    return { shard: this.rangeShards[lo], keyspaceId: keyspaceId(key) };
  }

  ownership(shard: string): Ownership {
    const owned: string[] = [];
    this.rangeShards.forEach((name, i) => {
      if (name !== shard) return;
      const lower = i > 0 ? showBound(this.bounds[i - 1]) : undefined;
      const upper = i < this.bounds.length ? showBound(this.bounds[i]) : undefined;
      if (lower === undefined && upper === undefined) owned.push("all keys");
      else if (lower === undefined) owned.push(`keys < ${upper}`);
      else if (upper === undefined) owned.push(`keys >= ${lower}`);
      else owned.push(`keys in [${lower}, ${upper})`);
    });
    return { description: owned.length ? owned.join("; ") : "no keys (no range names this shard)", keyspaceFraction: 0 };
  }

  private keyValue(key: string): Bound {
    if (this.keyType === "string") return key;
    const value = parseIntegerKey(key);
    if (value === undefined) {
      throw new ConnectError(
        `shard key ${quoteKey(key)} is not an integer; the range strategy here compares integer keys (like 42 or -7)`,
        Code.InvalidArgument,
      );
    }
    return value;
  }
}

function parseBound(raw: string | number, keyType: "integer" | "string", path: string): Bound {
  if (keyType === "string") {
    if (typeof raw !== "string") throw new PlacementConfigError(path, `must be a string when keyType is "string", got ${raw}`);
    return raw;
  }
  if (typeof raw === "number") {
    if (!Number.isSafeInteger(raw)) {
      throw new PlacementConfigError(path, `must be an integer (write bounds beyond ±2^53 as strings), got ${raw}`);
    }
    return BigInt(raw);
  }
  const value = parseIntegerKey(raw);
  if (value === undefined) throw new PlacementConfigError(path, `must be an integer when keyType is "integer", got ${JSON.stringify(raw)}`);
  return value;
}

// Both sides always have the same type: keyType fixes it for every bound and key.
function compareBounds(a: Bound, b: Bound): number {
  if (typeof a === "bigint") return a < (b as bigint) ? -1 : a > (b as bigint) ? 1 : 0;
  return compareCodePoints(a, b as string);
}

function showBound(bound: Bound): string {
  return typeof bound === "bigint" ? bound.toString() : JSON.stringify(bound);
}
