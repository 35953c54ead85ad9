// Keeps a router's WriteFence in step with the catalog's fences: it hears of a fence at once (LISTEN)
// and also polls, hands each fence to the WriteFence, and acknowledges once the router's writes in
// flight to the moving keys are done. Each poll also records that this router is alive, so a
// cutover knows whose acknowledgement to wait for.
import { CatalogWatch } from "../catalog/catalog-watch.js";
import type { FenceStore, StoredFence } from "../catalog/fence-store.js";
import type { ReshardJobStore } from "../catalog/reshard-job-store.js";
import { type KnownShards, shardMapOf } from "../catalog/shard-map-follower.js";
import type { DirectoryStore } from "../placement/directory.js";
import type { ShardMap } from "../placement/shard-map.js";
import type { WriteFence } from "./write-fence.js";

export interface FenceFollowerOptions {
  router: string;
  pollMs: number;
  /** Where the jobs at work are read (the WriteFence refuses schema changes while there are any). */
  jobs?: ReshardJobStore;
  /** How long in-flight writes may take to finish before this router leaves the fence unacknowledged. */
  drainMs: number;
  known: KnownShards;
  directory?: DirectoryStore;
  /** The version of the map in force here. */
  mapVersion(): number;
  /** From now on this router's connections carry `epoch` (or a higher one it already has). */
  adoptEpoch(epoch: number): void;
  /** A fence was lifted with a map version this router does not have yet: fetch it now. */
  onLifted?(): void;
  log?: (line: string) => void;
}

export class FenceFollower {
  private readonly watch: CatalogWatch;
  /** Fences acknowledged here: job → when that fence was raised. */
  private readonly acked = new Map<string, string>();

  constructor(private readonly store: FenceStore, private readonly fence: WriteFence, private readonly opts: FenceFollowerOptions) {
    this.watch = new CatalogWatch(async () => {
      await this.follow(await this.store.all());
      if (this.opts.jobs) this.fence.activeJobs = await this.opts.jobs.active();
    }, opts.pollMs, () => void this.store.heartbeat(this.opts.router).catch(() => {}));
  }

  async start(): Promise<void> {
    await this.store.heartbeat(this.opts.router).catch(() => {});
    await this.watch.start((notified) => this.store.listen(notified));
    await this.check();
  }

  /** Reads the fences now; concurrent calls share one read (and one more after it). */
  check(): Promise<void> {
    return this.watch.check();
  }

  private async follow(fences: StoredFence[]): Promise<void> {
    const present = new Set(fences.map((f) => f.job));
    for (const job of this.acked.keys()) {
      if (!present.has(job)) {
        this.acked.delete(job);
        this.fence.forget(job);
      }
    }
    await Promise.all(fences.map(async (f) => {
      // New connections carry the fence's epoch before the drain: what runs after it passes the guard.
      if (f.state === "holding" && f.fromVersion === this.opts.mapVersion() && this.acked.get(f.job) !== f.raisedAt) this.opts.adoptEpoch(f.epoch);
      const drained = await this.fence.update({ job: f.job, fromVersion: f.fromVersion, state: f.state, to: this.mapAfter(f) }, this.opts.drainMs);
      if (f.state === "lifted" && f.toVersion !== undefined && this.opts.mapVersion() < f.toVersion) this.opts.onLifted?.();
      if (f.state !== "holding" || !drained || this.acked.get(f.job) === f.raisedAt) return;
      await this.store.acknowledge(f.job, this.opts.router);
      this.acked.set(f.job, f.raisedAt);
    }));
  }

  private mapAfter(f: StoredFence): ShardMap | undefined {
    try {
      return shardMapOf({ version: f.fromVersion + 1, placement: f.placement, shards: f.shards }, this.opts);
    } catch (err) {
      this.opts.log?.(`fence of job ${f.job}: the new map cannot be built here (${(err as Error).message}); holding every write it covers`);
      return undefined;
    }
  }

  async stop(): Promise<void> {
    await this.watch.stop();
  }
}
