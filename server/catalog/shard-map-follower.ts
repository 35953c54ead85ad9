// Keeps a router on the catalog's latest shard map: at start it loads the latest version (seeding
// version 1 from the config when the catalog has none); afterwards it hears of each new version on
// the catalog's channel and also polls, so a lost notification or a dropped LISTEN connection only
// delays the switch by one poll. Each map is handed over whole; requests keep the map they started on.
import { buildShardMap, type ShardMap } from "../placement/shard-map.js";
import type { DirectoryStore } from "../placement/directory.js";
import type { PlacementConfig } from "../placement/placement-config.js";
import { ownsKeys } from "../placement/strategy.js";
import { CatalogWatch } from "./catalog-watch.js";

/** Which shards a router has nodes for. */
export interface KnownShards { has(name: string): boolean }
import { ShardMapRowError, type ShardMapStore, type StoredShardMap } from "./shard-map-store.js";

export interface FollowerOptions {
  /** Shards this router has nodes for (configured or registered): a map naming another one cannot be served here. */
  known: KnownShards;
  /** A map names shards this router does not know yet: look for newly registered ones, then judge it. */
  learnShards?: () => Promise<void>;
  directory?: DirectoryStore;
  pollMs: number;
  /** A new map is in force (after the first). */
  onMap(map: ShardMap): void;
  /** A version that cannot be served here (an unknown shard, a bad placement): the old map stays. */
  onRejected(version: number, reason: string): void;
}

/** Builds the ShardMap of a stored version; throws with a reason a person can act on. */
export function shardMapOf(stored: StoredShardMap, opts: Pick<FollowerOptions, "known" | "directory">): ShardMap {
  const unknown = stored.shards.filter((s) => !opts.known.has(s.name)).map((s) => s.name);
  if (unknown.length > 0) {
    throw new Error(`shard map version ${stored.version} names shard(s) ${unknown.join(", ")} that this router has no nodes for: register them (AddShard) or add them to its config's shards`);
  }
  return buildShardMap(stored.placement, stored.shards.filter((s) => ownsKeys(s.state)).map(({ name, weight }) => ({ name, weight })), {
    version: stored.version,
    epoch: stored.epoch ?? 0,
    directory: opts.directory,
    states: Object.fromEntries(stored.shards.map((s) => [s.name, s.state])),
  });
}

export class ShardMapFollower {
  private readonly watch: CatalogWatch;

  private constructor(private readonly store: ShardMapStore, private version: number, private readonly opts: FollowerOptions) {
    this.watch = new CatalogWatch(() => this.advance(), opts.pollMs);
  }

  /**
   * The map to start with: the catalog's latest, or version 1 seeded from `seed` when there is none
   * (the first router of a cluster). Then follows the catalog until stop().
   */
  static async start(store: ShardMapStore, seed: { placement: PlacementConfig; shards: { name: string; weight: number }[]; by: string },
    opts: FollowerOptions): Promise<{ map: ShardMap; follower: ShardMapFollower }> {
    const stored = (await store.latest()) ?? (await store.seed(seed.placement, seed.shards.map((s) => ({ ...s, state: "active" as const })), seed.by));
    const map = shardMapOf(stored, opts);
    const follower = new ShardMapFollower(store, stored.version, opts);
    await follower.watch.start((notified) => store.listen((v) => { if (v > follower.version) notified(); }));
    void follower.check(); // a version committed between the load and the LISTEN
    return { map, follower };
  }

  get current(): number {
    return this.version;
  }

  /** Looks for a newer version now; concurrent calls share one look (and one more after it). */
  check(): Promise<void> {
    return this.watch.check();
  }

  private async advance(): Promise<void> {
    const latest = await this.store.latestVersion();
    if (this.watch.stopped || latest <= this.version) return;
    let stored: StoredShardMap | undefined;
    try {
      stored = await this.store.latest();
    } catch (err) {
      if (!(err instanceof ShardMapRowError)) throw err;
      this.version = err.version;
      this.opts.onRejected(err.version, err.message);
      return;
    }
    if (!stored || stored.version <= this.version || this.watch.stopped) return;
    if (this.opts.learnShards && stored.shards.some((s) => !this.opts.known.has(s.name))) await this.opts.learnShards();
    let map: ShardMap;
    try {
      map = shardMapOf(stored, this.opts);
    } catch (err) {
      this.version = stored.version; // said once per version, not at every poll
      this.opts.onRejected(stored.version, (err as Error).message);
      return;
    }
    this.version = stored.version;
    this.opts.onMap(map);
  }

  async stop(): Promise<void> {
    await this.watch.stop();
  }
}
