// Consistent hashing: each shard puts `vnodes * weight` points on the 32-bit ring; a key belongs to
// the first point at or after its keyspace id (wrapping past 2^32-1 to the lowest point).
//
// Points are hashed from shard NAMES (`${name}#${i}`), never from list positions, so adding a shard
// only adds its own points: the keys it takes over come from every other shard, about 1/(N+1) in
// total, and no key moves between two old shards. Reordering the config moves nothing.
import { PlacementConfigError } from "./config-error.js";
import { keyspaceId, murmur3 } from "./murmur3.js";
import { assertShardKey } from "./shard-key.js";
import type { Ownership, Placement, PlacementStrategy, ShardInfo } from "./strategy.js";

/**
 * Ring points per unit of weight. A shard's share of the keyspace is a sum of `vnodes` random arcs,
 * so its relative spread shrinks like 1/sqrt(vnodes). Measured over 200 random sets of 4 shard names,
 * the most-off shard was off by 7.3% of its fair share on average (20% worst) at 256 vnodes, and
 * 3.6% on average (7.8% worst) at 1024. We take 1024: even load matters more than the cost, which
 * is 8 KiB per shard and one more binary-search step per key.
 */
export const DEFAULT_VNODES = 1024;

const utf8 = new TextEncoder();
const KEYSPACE = 2 ** 32;
/** Room for shard name ranks in a packed ring entry; also the most shards one ring can hold. */
const RANKS = 2 ** 16;
/** 8 bytes a point: 4 million points is 32 MiB, far beyond any sensible ring. */
const MAX_POINTS = 4_000_000;

export class HashRingStrategy implements PlacementStrategy {
  readonly name = "hash_ring";
  readonly vnodes: number;
  /** Sorted, distinct ring points. */
  private readonly points: Uint32Array;
  /** owners[j] = index into `shards` of the shard owning points[j]. */
  private readonly owners: Uint32Array;
  private readonly shards: readonly ShardInfo[];
  private readonly fractions: ReadonlyMap<string, number>;

  constructor(shards: readonly ShardInfo[], options: { vnodes?: number } = {}) {
    const vnodes = options.vnodes ?? DEFAULT_VNODES;
    if (!Number.isInteger(vnodes) || vnodes < 1 || vnodes > 10_000) {
      throw new PlacementConfigError("vnodes", `must be an integer from 1 to 10000, got ${vnodes}`);
    }
    if (shards.length === 0) throw new PlacementConfigError("shards", "a hash ring needs at least one shard");
    if (shards.length > RANKS) throw new PlacementConfigError("shards", `a hash ring holds at most ${RANKS} shards`);
    this.vnodes = vnodes;
    this.shards = shards;

    // Two points can hash alike. Break the tie by shard name, not config position, so the ring
    // (and every key's shard) is the same whatever order the shards are listed in. Packing
    // point * 2^16 + nameRank into one double (exact below 2^53) sorts as a plain typed array,
    // without an object per point (100 shards x 1024 points = 100k of them).
    const byName = shards.map((_, i) => i).sort((a, b) => compareNames(shards[a].name, shards[b].name));
    const rankOf = new Uint32Array(shards.length);
    byName.forEach((owner, rank) => (rankOf[owner] = rank));
    const total = shards.reduce((n, s) => n + vnodes * s.weight, 0);
    if (total > MAX_POINTS) {
      throw new PlacementConfigError(
        "vnodes",
        `${vnodes} vnodes x total shard weight = ${total} ring points, over the limit of ${MAX_POINTS}; lower vnodes or the weights`,
      );
    }
    const packed = new Float64Array(total);
    let next = 0;
    shards.forEach((shard, owner) => {
      for (let i = 0; i < vnodes * shard.weight; i++) {
        packed[next++] = murmur3(utf8.encode(`${shard.name}#${i}`)) * RANKS + rankOf[owner];
      }
    });
    packed.sort();
    const points: number[] = [];
    const owners: number[] = [];
    for (const entry of packed) {
      const point = Math.floor(entry / RANKS);
      if (points.length > 0 && points[points.length - 1] === point) continue; // first (lowest name) wins
      points.push(point);
      owners.push(byName[entry % RANKS]);
    }
    this.points = Uint32Array.from(points);
    this.owners = Uint32Array.from(owners);
    this.fractions = this.measureArcs();
  }

  place(key: string): Placement {
    assertShardKey(key);
    const id = keyspaceId(key);
    return { shard: this.shards[this.owners[this.pointIndexFor(id)]].name, keyspaceId: id };
  }

  ownership(shard: string): Ownership {
    const fraction = this.fractions.get(shard) ?? 0;
    const info = this.shards.find((s) => s.name === shard);
    const points = info ? this.vnodes * info.weight : 0;
    return {
      description: `${points} ring points, ${(fraction * 100).toFixed(1)}% of the keyspace`,
      keyspaceFraction: fraction,
    };
  }

  /** Index of the first point >= id, wrapping to 0 past the highest point. */
  private pointIndexFor(id: number): number {
    const points = this.points;
    let lo = 0;
    let hi = points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid] < id) lo = mid + 1;
      else hi = mid;
    }
    return lo === points.length ? 0 : lo;
  }

  /** Exact share of the 2^32 ids each shard owns: point j owns the ids in (points[j-1], points[j]]. */
  private measureArcs(): Map<string, number> {
    const { points, owners } = this;
    const owned = new Map<string, number>(this.shards.map((s) => [s.name, 0]));
    for (let j = 0; j < points.length; j++) {
      // The lowest point also owns the wrap-around arc above the highest point.
      const arc = j === 0 ? points[0] + KEYSPACE - points[points.length - 1] : points[j] - points[j - 1];
      const name = this.shards[owners[j]].name;
      owned.set(name, owned.get(name)! + arc);
    }
    for (const [name, ids] of owned) owned.set(name, ids / KEYSPACE);
    return owned;
  }
}

function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
