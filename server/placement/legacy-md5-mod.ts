// Bit-for-bit the old Go router's placement, so its users can switch routers without moving a row:
//   binary.BigEndian.Uint64(md5([]byte(key))[:8]) % uint64(len(shards))  ->  shards[index]
// Go's []byte(key) is the key's UTF-8 bytes; the modulo is unsigned 64-bit, hence BigInt.
// The keyspace id we report is still murmur3 (it identifies the key, it does not decide the shard).
import { createHash } from "node:crypto";
import { keyspaceId } from "./murmur3.js";
import { assertShardKey } from "./shard-key.js";
import type { Ownership, Placement, PlacementStrategy, ShardInfo } from "./strategy.js";

/** The shard index the old Go router computed for `key` over `shardCount` shards. */
export function legacyMd5Index(key: string, shardCount: number): number {
  const digest = createHash("md5").update(key, "utf8").digest();
  return Number(digest.readBigUInt64BE(0) % BigInt(shardCount));
}

export class LegacyMd5ModStrategy implements PlacementStrategy {
  readonly name = "legacy_md5_mod";
  private readonly shards: readonly ShardInfo[];

  constructor(shards: readonly ShardInfo[]) {
    this.shards = shards;
  }

  place(key: string): Placement {
    assertShardKey(key);
    return { shard: this.shards[legacyMd5Index(key, this.shards.length)].name, keyspaceId: keyspaceId(key) };
  }

  ownership(shard: string): Ownership {
    const n = this.shards.length;
    const index = this.shards.findIndex((s) => s.name === shard);
    if (index < 0) return { description: "not in the shard map", keyspaceFraction: 0 };
    // Keys are split by md5, not by keyspace id, so this shard owns no keyspace-id range: fraction 0.
    return {
      description: `keys whose md5 (first 8 bytes, big-endian) mod ${n} = ${index}, about ${(100 / n).toFixed(1)}% of keys`,
      keyspaceFraction: 0,
    };
  }
}
