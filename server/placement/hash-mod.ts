// keyspace id mod N over the shards in config order. Simple and perfectly even, but going from N to
// N+1 shards moves almost every key (about N/(N+1) of them); prefer hash_ring unless the shard count
// is fixed for good.
import { keyspaceId } from "./murmur3.js";
import { assertShardKey } from "./shard-key.js";
import type { Ownership, Placement, PlacementStrategy, ShardInfo } from "./strategy.js";

const KEYSPACE = 2 ** 32;

export class HashModStrategy implements PlacementStrategy {
  readonly name = "hash_mod";
  private readonly shards: readonly ShardInfo[];

  constructor(shards: readonly ShardInfo[]) {
    this.shards = shards;
  }

  place(key: string): Placement {
    assertShardKey(key);
    const id = keyspaceId(key);
    return { shard: this.shards[id % this.shards.length].name, keyspaceId: id };
  }

  ownership(shard: string): Ownership {
    const n = this.shards.length;
    const index = this.shards.findIndex((s) => s.name === shard);
    if (index < 0) return { description: "not in the shard map", keyspaceFraction: 0 };
    // Exact count of ids in [0, 2^32) with id % n === index (2^32 is rarely a multiple of n).
    const fraction = (Math.floor((KEYSPACE - 1 - index) / n) + 1) / KEYSPACE;
    return {
      description: `keyspace ids with id mod ${n} = ${index}, ${(fraction * 100).toFixed(1)}% of the keyspace`,
      keyspaceFraction: fraction,
    };
  }
}
