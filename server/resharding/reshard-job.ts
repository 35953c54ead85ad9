// A reshard job's data movement: one SourceMove per source shard of the map in force, each run again
// after a failure (a restarted source, a cut stream) until the job is stopped or cancelled. What
// survives a router lives on the nodes (slots, targets' progress), so a new ReshardJob for the same
// job id picks up where the last one stopped. The cutover is not part of this (yet).
import type { ShardMap } from "../placement/shard-map.js";
import type { NodeConfig } from "../shards/node-pool.js";
import { type SourcePlan, planMoves } from "./plan.js";
import { SourceMove, type SourceMoveSpec, type SourceMoveStatus, cancelSourceMove } from "./source-move.js";
import type { ShardedTable } from "./table-schema.js";

export interface ReshardJobSpec {
  job: string;
  from: ShardMap;
  to: ShardMap;
  tables: ShardedTable[];
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
    this.plans = planMoves(spec.from, spec.to);
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
