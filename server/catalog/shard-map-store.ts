// Shard map versions in the catalog: the truth every router follows. Version 1 is seeded from the
// first router's config; a later version (resharding) is a new row, never an update, and is announced
// on a channel so routers switch within moments (they also poll, so a lost notification only delays).
// Only placement lives here (strategy, shards, weights, ranges, list values, shard states): how to
// reach a shard's nodes, with credentials, stays in each router's config.
import { z } from "zod";
import type { PlacementConfig } from "../placement/placement-config.js";
import { SHARD_STATES, type ShardState } from "../placement/strategy.js";
import type { Catalog } from "./catalog.js";

export const shardMapChannel = "shardrouter_shard_map";

export interface StoredShard { name: string; weight: number; state: ShardState }

export interface StoredShardMap {
  version: number;
  /** The write epoch of the cutover that made it (0 if none did). */
  epoch?: number;
  placement: PlacementConfig;
  shards: StoredShard[];
}

/** A stored version that is not a shard map (for example, written by hand with a mistake). */
export class ShardMapRowError extends Error {
  constructor(readonly version: number, reason: string) {
    super(`shard map version ${version} in the catalog is malformed: ${reason}`);
  }
}

// A row is checked before any router serves it: someone may have written it by hand.
const StoredShardsSchema = z.array(z.object({
  name: z.string().min(1),
  weight: z.number().int().min(1),
  state: z.enum(SHARD_STATES),
}));

export class ShardMapStore {
  constructor(private readonly catalog: Catalog) {}

  /** The active map: the highest version. */
  async latest(): Promise<StoredShardMap | undefined> {
    return this.at();
  }

  /** One version (default: the latest). */
  async at(version?: number): Promise<StoredShardMap | undefined> {
    const rows = await this.catalog.sql<{ version: string; epoch: string; placement: PlacementConfig; shards: StoredShard[] }[]>`
      select version::text, epoch::text, placement, shards from shardrouter.shard_maps
       ${version === undefined ? this.catalog.sql`` : this.catalog.sql`where version = ${version}`}
       order by version desc limit 1`;
    const row = rows[0];
    if (!row) return undefined;
    const shards = StoredShardsSchema.safeParse(row.shards);
    if (!shards.success) {
      const issue = shards.error.issues[0];
      throw new ShardMapRowError(Number(row.version), `shards${issue.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("")}: ${issue.message}`);
    }
    return { version: Number(row.version), epoch: Number(row.epoch), placement: row.placement, shards: shards.data };
  }

  /** The latest version's number alone (the poll): 0 when there is none. */
  async latestVersion(): Promise<number> {
    const [{ v }] = await this.catalog.sql<{ v: string | null }[]>`select max(version)::text as v from shardrouter.shard_maps`;
    return v === null ? 0 : Number(v);
  }

  /** Version 1 from a config, unless some router seeded one already; returns what the catalog holds. */
  async seed(placement: PlacementConfig, shards: StoredShard[], by: string): Promise<StoredShardMap> {
    await this.catalog.sql`
      insert into shardrouter.shard_maps (version, placement, shards, created_by)
      values (1, ${this.catalog.sql.json(placement as never)}, ${this.catalog.sql.json(shards as never)}, ${by})
      on conflict (version) do nothing`;
    return (await this.latest())!;
  }

  /**
   * Commits version `after + 1`, if `after` is still the latest (another writer first: null), and
   * announces it in the same transaction: routers hear of it only once it is visible.
   */
  async publish(after: number, placement: PlacementConfig, shards: StoredShard[], by: string): Promise<number | null> {
    return this.catalog.sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(hashtext('shardrouter.shard_maps'))`;
      const [{ v }] = await tx<{ v: string | null }[]>`select max(version)::text as v from shardrouter.shard_maps`;
      if (Number(v ?? 0) !== after) return null;
      const version = after + 1;
      await tx`insert into shardrouter.shard_maps (version, placement, shards, created_by)
               values (${version}, ${tx.json(placement as never)}, ${tx.json(shards as never)}, ${by})`;
      await tx`select pg_notify(${shardMapChannel}, ${String(version)})`;
      return version;
    });
  }

  /** Calls `onVersion` with each announced version number; resolves once listening. */
  async listen(onVersion: (version: number) => void): Promise<{ unlisten(): Promise<void> }> {
    return this.catalog.sql.listen(shardMapChannel, (payload) => {
      const version = Number(payload);
      if (Number.isSafeInteger(version)) onVersion(version);
    });
  }
}
