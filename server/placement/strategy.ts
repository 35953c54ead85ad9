// The contract every placement strategy meets: key -> (shard, keyspace id), plus a description of
// what each shard owns (for GetTopology). Strategies are immutable once built; a shard map swap
// (resharding) replaces them whole rather than mutating them.

export const STRATEGY_NAMES = ["hash_ring", "hash_mod", "legacy_md5_mod", "range", "list", "directory"] as const;
export type StrategyName = (typeof STRATEGY_NAMES)[number];

export interface Placement {
  shard: string;
  /** murmur3 x86 32-bit (seed 0) of the key's UTF-8 bytes, whatever the strategy. */
  keyspaceId: number;
}

export interface Ownership {
  description: string;
  /** Fraction of the 2^32 keyspace-id space, for strategies that place by keyspace id; else 0. */
  keyspaceFraction: number;
}

export interface PlacementStrategy {
  readonly name: StrategyName;
  /**
   * Where `key` lives. Synchronous for every strategy but `directory` (which may consult the catalog).
   * Throws ConnectError: InvalidArgument for an empty or malformed key, NotFound when no shard takes it.
   */
  place(key: string): Placement | Promise<Placement>;
  ownership(shard: string): Ownership;
}

export interface ShardInfo {
  name: string;
  /** Integer >= 1 (default 1). Only hash_ring (and directory's fallback ring) honours it. */
  weight: number;
}

/**
 * A shard's part in a shard map: `active` owns keys; while a reshard runs a shard is `receiving`
 * (gets data, owns no keys yet) or `draining` (still owns keys it is giving away); `retired` owns
 * nothing any more. Only active and draining shards take part in placement.
 */
export const SHARD_STATES = ["active", "receiving", "draining", "retired"] as const;
export type ShardState = (typeof SHARD_STATES)[number];

export function ownsKeys(state: ShardState): boolean {
  return state === "active" || state === "draining";
}
