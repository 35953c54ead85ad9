// Deletes idempotency records older than transactions.requestRetentionMs from every shard, every
// transactions.requestPruneIntervalMs (the first pass one interval after start, so a starting router
// serves first), at most one pass at a time per router. A pass never blocks a transfer: each batch is
// one short statement (its own transaction) that deletes a few expired records it could lock at once,
// skipping any a transaction in flight (or prepared) holds, and a shard's batches go on until one
// deletes fewer than a batch. Several routers may prune the same shard at once: skip locked makes them
// share the work instead of waiting for each other. A shard that fails (down, or a stale shard map
// refused) is left for the next pass.
import type { ResultSet } from "../../gen/shardrouter/v1/value_pb.js";
import { executeStatement, newBudget } from "../execution/shard-executor.js";
import { type ShardNodes, type ShardSet, writerOf } from "../shards/shard-set.js";
import { deleteExpiredDecisions, deleteExpiredRequests, needsRequestLog, requestLogState, text } from "./request-log.js";

export interface PruneOptions {
  retentionMs: number;
  intervalMs: number;
  /** Records deleted per batch (one short transaction each). */
  batchSize?: number;
}

export interface PruneRound {
  /** Records deleted by this pass, on every shard. */
  pruned: number;
  /** Shards that failed; their expired records wait for the next pass. */
  failedShards: string[];
}

/** Told what each pass did (metrics, logs); it changes nothing here. */
export interface PruneObserver {
  requestsPruned(event: { shard: string; records: number }): void;
  requestsNotPruned(event: { shard: string; error: unknown }): void;
  /** A shard's request log has no index on created_at (a big table of an older router): once per shard. */
  requestLogUnindexed(event: { shard: string }): void;
}

const unobserved: PruneObserver = { requestsPruned() {}, requestsNotPruned() {}, requestLogUnindexed() {} };

const batchTimeoutMs = 30_000;

export class RequestPruning {
  private timer: NodeJS.Timeout | undefined;
  private current: Promise<PruneRound> | undefined;
  private queued: Promise<PruneRound> | undefined;
  private readonly stopping = new AbortController();
  private readonly unindexed = new Set<string>();
  private readonly batchSize: number;

  constructor(
    private readonly shards: ShardSet,
    private readonly options: PruneOptions,
    private readonly observer: PruneObserver = unobserved,
  ) {
    this.batchSize = options.batchSize ?? 1000;
  }

  start(): void {
    this.timer = setInterval(() => { if (!this.current) void this.runOnce(); }, this.options.intervalMs);
    this.timer.unref();
  }

  /** Ends the pass in progress after its current batch (which is cancelled) and runs no more. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.stopping.abort();
    await Promise.all([this.current, this.queued]);
  }

  /**
   * A pass that starts after this call: when one is running, the next one begins as it ends (callers
   * meanwhile share that next one), so there is never more than one at a time.
   */
  runOnce(): Promise<PruneRound> {
    if (!this.current) return this.begin();
    this.queued ??= this.current.then(() => {
      this.queued = undefined;
      return this.begin();
    });
    return this.queued;
  }

  private begin(): Promise<PruneRound> {
    const pass = this.pass().finally(() => {
      if (this.current === pass) this.current = undefined;
    });
    this.current = pass;
    return pass;
  }

  private async pass(): Promise<PruneRound> {
    const round: PruneRound = { pruned: 0, failedShards: [] };
    for (const shard of this.shards.shards) {
      if (this.stopping.signal.aborted) break;
      try {
        const records = await this.prune(shard);
        round.pruned += records;
        if (records > 0) this.report(() => this.observer.requestsPruned({ shard: shard.name, records }));
      } catch (err) {
        if (needsRequestLog(err)) continue; // no request log on this shard yet: nothing to prune
        round.failedShards.push(shard.name);
        if (!this.stopping.signal.aborted) this.report(() => this.observer.requestsNotPruned({ shard: shard.name, error: err }));
      }
    }
    return round;
  }

  private async prune(shard: ShardNodes): Promise<number> {
    const run = (sql: string, params: string[]) => executeStatement({
      shard: shard.name, pool: writerOf(shard), sql, params: params.map(text),
      signal: AbortSignal.any([this.stopping.signal, AbortSignal.timeout(batchTimeoutMs)]), budget: newBudget(1, 1024),
    });
    const state = await run(requestLogState, []);
    if (cell(state, 0) !== true) return 0; // no request log here yet: nothing to prune
    if (cell(state, 1) !== true && !this.unindexed.has(shard.name)) {
      this.unindexed.add(shard.name);
      this.report(() => this.observer.requestLogUnindexed({ shard: shard.name }));
    }
    let pruned = 0;
    let from = "-infinity";
    for (;;) {
      const batch = await run(deleteExpiredRequests, [String(this.options.retentionMs), from, String(this.batchSize)]);
      const deleted = Number(cell(batch, 0));
      pruned += deleted;
      if (deleted < this.batchSize || this.stopping.signal.aborted) break;
      from = String(cell(batch, 1));
    }
    // The commit decisions kept on this shard as a home (coordinator.ts) go after the same retention:
    // recovery needs one only while a participant is still prepared, seconds in practice.
    try {
      for (;;) {
        const batch = await run(deleteExpiredDecisions, [String(this.options.retentionMs), String(this.batchSize)]);
        if (Number(batch.rowsAffected) < this.batchSize || this.stopping.signal.aborted) break;
      }
    } catch (err) {
      if (!needsRequestLog(err)) throw err; // a log of an older router, without decisions yet
    }
    return pruned;
  }

  /** A failing observer never stops a pass. */
  private report(notify: () => void): void {
    try {
      notify();
    } catch {
      // metrics and logs are best effort
    }
  }
}

function cell(result: ResultSet, column: number): unknown {
  return result.rows[0]?.values[column]?.kind.value;
}
