// A cutover's write fence, shared by every router through the catalog: the job's router writes a
// fence row (the map it switches from, and the map it switches to) and announces it; each router
// holds new writes to the keys that change owner, lets the ones in flight finish, and acknowledges.
// The fence is lifted together with the new shard map version (one transaction), or aborted.
// Routers also record that they are alive, so a cutover knows whose acknowledgement to wait for.
import type { PlacementConfig } from "../placement/placement-config.js";
import type { Catalog } from "./catalog.js";
import type { StoredShard } from "./shard-map-store.js";
import { shardMapChannel } from "./shard-map-store.js";

export const fenceChannel = "shardrouter_fence";

export type FenceState = "holding" | "lifted" | "aborted";

export interface StoredFence {
  job: string;
  fromVersion: number;
  /** The map the cutover switches to (it becomes version fromVersion + 1). */
  placement: PlacementConfig;
  shards: StoredShard[];
  state: FenceState;
  /** The write epoch this fence raises on the sources; a router that acknowledges writes with it. */
  epoch: number;
  toVersion?: number;
  /** When it was raised (catalog clock): tells a fence raised again for the same job from the last one. */
  raisedAt: string;
}

export class FenceStore {
  constructor(private readonly catalog: Catalog) {}

  async all(): Promise<StoredFence[]> {
    const rows = await this.catalog.sql<{ job: string; from_version: string; placement: PlacementConfig; shards: StoredShard[]; state: FenceState; epoch: string; to_version: string | null; raised_at: string }[]>`
      select job, from_version::text, placement, shards, state, epoch::text, to_version::text, started_at::text as raised_at from shardrouter.fences`;
    return rows.map((r) => ({
      job: r.job, fromVersion: Number(r.from_version), placement: r.placement, shards: r.shards, state: r.state, epoch: Number(r.epoch), raisedAt: r.raised_at,
      ...(r.to_version === null ? {} : { toVersion: Number(r.to_version) }),
    }));
  }

  /**
   * Raises the fence (a new one for the job: earlier acknowledgements are forgotten) and announces
   * it. Returns its write epoch: higher than any before, so a router that acknowledged an earlier,
   * aborted fence does not pass this one's guard.
   */
  async raise(job: string, fromVersion: number, placement: PlacementConfig, shards: StoredShard[]): Promise<number> {
    const sql = this.catalog.sql;
    return sql.begin(async (tx) => {
      await tx`delete from shardrouter.fence_acks where job = ${job}`;
      const [{ epoch }] = await tx<{ epoch: string }[]>`select nextval('shardrouter.fence_epochs')::text as epoch`;
      await tx`insert into shardrouter.fences (job, from_version, placement, shards, state, epoch)
               values (${job}, ${fromVersion}, ${tx.json(placement as never)}, ${tx.json(shards as never)}, 'holding', ${epoch})
               on conflict (job) do update set from_version = excluded.from_version, placement = excluded.placement,
                 shards = excluded.shards, state = 'holding', epoch = excluded.epoch, to_version = null, started_at = now()`;
      await tx`select pg_notify(${fenceChannel}, ${job})`;
      return Number(epoch);
    });
  }

  async acknowledge(job: string, router: string): Promise<void> {
    await this.catalog.sql`insert into shardrouter.fence_acks (job, router) values (${job}, ${router}) on conflict do nothing`;
  }

  async acknowledged(job: string): Promise<Set<string>> {
    const rows = await this.catalog.sql<{ router: string }[]>`select router from shardrouter.fence_acks where job = ${job}`;
    return new Set(rows.map((r) => r.router));
  }

  /**
   * Commits the new shard map version and lifts the fence in one transaction, so no router sees one
   * without the other. The new version gets a write epoch of its own, above the fence's: once the
   * sources take only that one, a router still on the old map (acknowledged or not) cannot write
   * there. Null when the map in force is no longer `fromVersion` (nothing is written).
   */
  async lift(job: string, fromVersion: number, by: string, directoryEntries?: Record<string, string>): Promise<{ version: number; epoch: number } | null> {
    return this.catalog.sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(hashtext('shardrouter.shard_maps'))`;
      const [{ v }] = await tx<{ v: string | null }[]>`select max(version)::text as v from shardrouter.shard_maps`;
      if (Number(v ?? 0) !== fromVersion) return null;
      const [fence] = await tx<{ placement: unknown; shards: unknown }[]>`
        select placement, shards from shardrouter.fences where job = ${job} and state = 'holding' for update`;
      if (!fence) return null;
      const version = fromVersion + 1;
      const [{ epoch }] = await tx<{ epoch: string }[]>`select nextval('shardrouter.fence_epochs')::text as epoch`;
      await tx`insert into shardrouter.shard_maps (version, placement, shards, created_by, epoch)
               values (${version}, ${tx.json(fence.placement as never)}, ${tx.json(fence.shards as never)}, ${by}, ${epoch})`;
      await tx`update shardrouter.fences set state = 'lifted', to_version = ${version} where job = ${job}`;
      if (directoryEntries && Object.keys(directoryEntries).length) {
        // Routers on the new map start with empty directory caches: they read these.
        await tx`insert into shardrouter.directory (key, shard)
                 select key, value from jsonb_each_text(${tx.json(directoryEntries as never)})
                 on conflict (key) do update set shard = excluded.shard, assigned_at = now()`;
      }
      await tx`select pg_notify(${shardMapChannel}, ${String(version)})`;
      await tx`select pg_notify(${fenceChannel}, ${job})`;
      return { version, epoch: Number(epoch) };
    });
  }

  /** The cutover did not happen: routers write to the sources again, under the old map. */
  async abort(job: string): Promise<void> {
    await this.catalog.sql.begin(async (tx) => {
      await tx`update shardrouter.fences set state = 'aborted' where job = ${job} and state = 'holding'`;
      await tx`select pg_notify(${fenceChannel}, ${job})`;
    });
  }

  async remove(job: string): Promise<void> {
    await this.catalog.sql.begin(async (tx) => {
      await tx`delete from shardrouter.fence_acks where job = ${job}`;
      await tx`delete from shardrouter.fences where job = ${job}`;
    });
  }

  async listen(onFence: (job: string) => void): Promise<{ unlisten(): Promise<void> }> {
    return this.catalog.sql.listen(fenceChannel, onFence);
  }

  /** This router is serving (called at every poll). */
  async heartbeat(router: string): Promise<void> {
    await this.catalog.sql`insert into shardrouter.routers (id) values (${router}) on conflict (id) do update set seen_at = now()`;
  }

  /** Routers seen within `withinMs`. */
  async liveRouters(withinMs: number): Promise<string[]> {
    const rows = await this.catalog.sql<{ id: string }[]>`
      select id from shardrouter.routers where seen_at > now() - make_interval(secs => ${withinMs / 1000})`;
    return rows.map((r) => r.id);
  }
}
