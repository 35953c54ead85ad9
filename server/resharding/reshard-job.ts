// A reshard job's data movement: one SourceMove per source shard of the map in force, each run again
// after a failure (a restarted source, a cut stream) until the job is stopped or cancelled. What
// survives a router lives on the nodes (slots, targets' progress), so a new ReshardJob for the same
// job id picks up where the last one stopped. cutOver() switches the routers to the new map
// (cutover.ts); cleanUp() then removes the moved rows from the sources and the job's slots.
import type postgres from "postgres";
import type { FenceStore } from "../catalog/fence-store.js";
import type { ShardMapStore, StoredShard } from "../catalog/shard-map-store.js";
import type { PlacementConfig } from "../placement/placement-config.js";
import type { ShardMap } from "../placement/shard-map.js";
import type { NodeConfig } from "../shards/node-pool.js";
import { type CutoverResult, type CutoverSource, CutoverError, cutOver } from "./cutover.js";
import { installEpochGuard } from "./epoch-guard.js";
import { nodeClient } from "./node-client.js";
import { type KeyMoves, type SourcePlan, planMoves } from "./plan.js";
import { SourceMove, type SourceMoveSpec, type SourceMoveStatus, cancelSourceMove, cleanUpSource, deleteMovedRows } from "./source-move.js";
import { type ShardedTable, readTableShape } from "./table-schema.js";

export interface JobCutoverOptions {
  fences: FenceStore;
  maps: ShardMapStore;
  router: string;
  /** The new map as it will be stored (its version is the one in force + 1). */
  to: { placement: PlacementConfig; shards: StoredShard[] };
  /** Directory entries that change with the new map (key → shard). */
  directoryEntries?: Record<string, string>;
  timeoutMs?: number;
  ackTimeoutMs?: number;
  liveWithinMs?: number;
}

export interface ReshardJobSpec {
  job: string;
  from: ShardMap;
  to: ShardMap;
  tables: ShardedTable[];
  /** Directory maps: the keys that move (see plan.ts). */
  keyMoves?: KeyMoves;
  /** The primary node of a shard, with credentials that may replicate (REPLICATION) and own publications. */
  primary(shard: string): NodeConfig;
  connectTimeoutMs?: number;
  /** Delay before a failed source move runs again (default 1 s, doubling to 30 s). */
  retryAfterMs?: number;
  log?: (line: string) => void;
}

export interface ReshardJobStatus {
  sources: Record<string, SourceMoveStatus & { attempts: number }>;
}

export class ReshardJob {
  readonly plans: SourcePlan[];
  private readonly moves = new Map<string, SourceMove>();
  private readonly attempts = new Map<string, number>();
  private readonly running: Promise<void>[] = [];
  private stopped = false;
  private readonly wake = new Set<() => void>();

  constructor(private readonly spec: ReshardJobSpec) {
    this.plans = planMoves(spec.from, spec.to, spec.keyMoves);
  }

  specFor(plan: SourcePlan): SourceMoveSpec {
    const { spec } = this;
    return {
      job: spec.job,
      source: { name: plan.source, node: spec.primary(plan.source) },
      targets: plan.targets.map((t) => ({ name: t, node: spec.primary(t) })),
      tables: spec.tables,
      destination: plan.destination,
      fromSource: plan.fromSource,
      connectTimeoutMs: spec.connectTimeoutMs,
    };
  }

  /** Starts every source's copy and stream; returns at once. */
  start(): void {
    for (const plan of this.plans) this.running.push(this.keepRunning(plan));
  }

  get status(): ReshardJobStatus {
    const sources: ReshardJobStatus["sources"] = {};
    for (const plan of this.plans) {
      const move = this.moves.get(plan.source);
      const attempts = this.attempts.get(plan.source) ?? 0;
      sources[plan.source] = { ...(move?.status ?? { phase: "starting", copied: {}, applied: 0n }), attempts };
    }
    return { sources };
  }

  /** Stops streaming everywhere; slots and progress stay, so the job can be resumed. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const w of this.wake) w();
    await Promise.all([...this.moves.values()].map((m) => m.stop()));
    await Promise.all(this.running);
  }

  /**
   * Switches every router to the new map (see cutover.ts); the streams stop once it is in force.
   * Throws CutoverError, with the sources serving as before, when it cannot finish in time.
   */
  async cutOver(opts: JobCutoverOptions): Promise<CutoverResult> {
    for (const plan of this.plans) {
      const phase = this.moves.get(plan.source)?.status.phase ?? "starting";
      if (phase !== "streaming") throw new CutoverError(`${plan.source} is not streaming yet (${phase}): nothing to cut over to`);
    }
    const clients: postgres.Sql[] = [];
    try {
      const sources: CutoverSource[] = [];
      for (const plan of this.plans) {
        const sql = nodeClient(this.spec.primary(plan.source), { max: 2, connectTimeoutMs: this.spec.connectTimeoutMs });
        clients.push(sql);
        const shapes = [];
        for (const table of this.spec.tables) shapes.push(await readTableShape(sql, table, plan.source));
        await installEpochGuard(sql, shapes);
        sources.push({ name: plan.source, sql, shapes });
      }
      const result = await cutOver({
        job: this.spec.job, fences: opts.fences, maps: opts.maps, router: opts.router, fromVersion: this.spec.from.version, to: opts.to, sources,
        appliedThrough: (source) => this.moves.get(source)?.status.applied ?? 0n,
        timeoutMs: opts.timeoutMs, ackTimeoutMs: opts.ackTimeoutMs, liveWithinMs: opts.liveWithinMs, directoryEntries: opts.directoryEntries,
      });
      await this.stop();
      return result;
    } finally {
      await Promise.all(clients.map((c) => c.end({ timeout: 1 }).catch(() => {})));
    }
  }

  /** After the cutover: drops each source's slot and publication, then deletes its moved rows. Returns the rows deleted. */
  async cleanUp(): Promise<number> {
    await this.stop();
    let deleted = 0;
    for (const plan of this.plans) {
      await cleanUpSource(this.spec.primary(plan.source), this.spec.job, plan.source);
      deleted += await deleteMovedRows(this.specFor(plan));
    }
    return deleted;
  }

  /** Stops, then removes everything the job made: copied rows on targets, progress rows, slots, publications. */
  async cancel(): Promise<void> {
    await this.stop();
    for (const plan of this.plans) await cancelSourceMove(this.specFor(plan));
  }

  private async keepRunning(plan: SourcePlan): Promise<void> {
    let delay = this.spec.retryAfterMs ?? 1000;
    while (!this.stopped) {
      const move = new SourceMove(this.specFor(plan));
      this.moves.set(plan.source, move);
      this.attempts.set(plan.source, (this.attempts.get(plan.source) ?? 0) + 1);
      try {
        await move.run();
        delay = this.spec.retryAfterMs ?? 1000;
      } catch (err) {
        this.spec.log?.(`reshard ${this.spec.job}: ${plan.source} stopped (${(err as Error).message}); running it again in ${delay} ms`);
      }
      if (this.stopped) return;
      await new Promise<void>((resolve) => {
        const done = () => { clearTimeout(timer); this.wake.delete(done); resolve(); };
        const timer = setTimeout(done, delay);
        this.wake.add(done);
      });
      delay = Math.min(delay * 2, 30_000);
    }
  }
}
