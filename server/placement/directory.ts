// A lookup table key -> shard, kept in the catalog (shared by every router instance). A key seen for
// the first time is assigned by the fallback rule (a hash ring over the same shards) and stored;
// from then on the table, not the hash, decides, so single keys can later be moved one at a time.
import { Code, ConnectError } from "@connectrpc/connect";
import { PlacementConfigError } from "./config-error.js";
import { HashRingStrategy } from "./hash-ring.js";
import { keyspaceId } from "./murmur3.js";
import { assertShardKey, quoteKey } from "./shard-key.js";
import type { Ownership, Placement, PlacementStrategy, ShardInfo } from "./strategy.js";

/** Where directory entries live. The catalog (Postgres) implements it; tests use an in-memory one. */
export interface DirectoryStore {
  lookup(key: string): Promise<string | undefined>;
  /** Insert key -> shard if the key is absent; returns the shard actually stored (first writer wins). */
  assign(key: string, shard: string): Promise<string>;
}

/**
 * Entries cached per router. An assignment never changes while this shard map is live (moving a key
 * is resharding, which builds a new map and so a new, empty cache), so the cache needs no
 * invalidation, only a bound on memory: 100k keys is a few MB.
 */
export const DEFAULT_DIRECTORY_CACHE_SIZE = 100_000;

export class DirectoryStrategy implements PlacementStrategy {
  readonly name = "directory";
  readonly fallback: HashRingStrategy;
  private readonly store: DirectoryStore;
  private readonly shardNames: ReadonlySet<string>;
  private readonly cacheSize: number;
  /** Least recently used first (Map keeps insertion order; a hit re-inserts). */
  private readonly cache = new Map<string, string>();
  /** Lookups in flight, so concurrent first requests for one key make one round trip. */
  private readonly pending = new Map<string, Promise<string>>();

  constructor(
    shards: readonly ShardInfo[],
    store: DirectoryStore,
    options: { vnodes?: number; cacheSize?: number } = {},
  ) {
    const cacheSize = options.cacheSize ?? DEFAULT_DIRECTORY_CACHE_SIZE;
    if (!Number.isInteger(cacheSize) || cacheSize < 0) {
      throw new PlacementConfigError("cacheSize", `must be an integer >= 0, got ${cacheSize}`);
    }
    this.fallback = new HashRingStrategy(shards, { vnodes: options.vnodes });
    this.store = store;
    this.shardNames = new Set(shards.map((s) => s.name));
    this.cacheSize = cacheSize;
  }

  async place(key: string): Promise<Placement> {
    assertShardKey(key);
    const id = keyspaceId(key);
    const cached = this.cache.get(key);
    if (cached !== undefined) {
      this.cache.delete(key);
      this.cache.set(key, cached);
      return { shard: cached, keyspaceId: id };
    }
    let pending = this.pending.get(key);
    if (!pending) {
      pending = this.resolve(key).finally(() => this.pending.delete(key));
      this.pending.set(key, pending);
    }
    return { shard: await pending, keyspaceId: id };
  }

  ownership(shard: string): Ownership {
    const share = this.fallback.ownership(shard).keyspaceFraction;
    return {
      description: `keys the directory assigns to it; new keys by hash ring (${(share * 100).toFixed(1)}% of new keys)`,
      keyspaceFraction: 0,
    };
  }

  private async resolve(key: string): Promise<string> {
    let shard = await this.callStore("look up", key, () => this.store.lookup(key));
    if (shard === undefined) {
      const proposed = this.fallback.place(key).shard;
      // Another router may have assigned the key meanwhile; the store keeps the first and tells us.
      shard = await this.callStore("assign", key, () => this.store.assign(key, proposed));
    }
    if (!this.shardNames.has(shard)) {
      throw new ConnectError(
        `the directory places key ${quoteKey(key)} on shard "${shard}", which is not in the current shard map`,
        Code.FailedPrecondition,
      );
    }
    this.remember(key, shard);
    return shard;
  }

  private remember(key: string, shard: string): void {
    if (this.cacheSize === 0) return;
    if (this.cache.size >= this.cacheSize) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, shard);
  }

  /** Store failures surface as Unavailable (the catalog is down), keeping the original as the cause. */
  private async callStore<T>(action: string, key: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      if (err instanceof ConnectError) throw err;
      const reason = err instanceof Error ? err.message : String(err);
      throw new ConnectError(
        `directory could not ${action} key ${quoteKey(key)}: ${reason}`,
        Code.Unavailable,
        undefined,
        undefined,
        err,
      );
    }
  }
}
