// Finds prepared transactions of our prefix on every shard and settles those older than the grace
// period. The decision is on the transaction's home shard (coordinator.ts): a committed request
// record with its transaction id means commit. With none, recovery writes a tombstone record with
// that transaction id on every shard first: on the home shard it waits for a transaction still
// open there, and once written, the home can never commit (unique transaction id), so rolling
// back is safe (presumed abort). Decisions in the catalog's log, from routers that committed
// there, are obeyed first. Transactions this router is driving are never touched. Several routers
// may recover at once: the records serialise them, and a COMMIT/ROLLBACK PREPARED that finds
// nothing was done by another.
import { executeStatement, newBudget } from "../execution/shard-executor.js";
import { type ShardNodes, type ShardSet, writerOf } from "../shards/shard-set.js";
import type { Decision, DecisionLog } from "./decision-log.js";
import { bytes, isUndefinedTable, text, tombstoneId } from "./request-log.js";
import { assertSafeGid, type TransactionIds } from "./transaction-id.js";

export interface RecoveryOptions { graceMs: number; intervalMs: number }
export interface RecoveryRound { committed: number; rolledBack: number; inDoubt: number }

/** Told what each round settled and what it could not (metrics, logs); it changes nothing here. */
export interface RecoveryObserver {
  settled(event: { shard: string; gid: string; decision: Decision; ageMs: number }): void;
  notSettled(event: { shard: string; gid: string; error: unknown }): void;
  round(tally: RecoveryRound): void;
}

const unobserved: RecoveryObserver = { settled() {}, notSettled() {}, round() {} };

const listPrepared = `select gid, (extract(epoch from now() - prepared) * 1000)::int8 as age_ms
  from pg_prepared_xacts where database = current_database() and gid like $1`;

export class Recovery {
  /** Prepared transactions of our prefix left unresolved by the last round. */
  inDoubt = 0;
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<RecoveryRound> | undefined;

  constructor(
    private readonly shards: ShardSet,
    private readonly decisions: DecisionLog | undefined,
    private readonly ids: TransactionIds,
    private readonly inflight: ReadonlySet<string>,
    private readonly options: RecoveryOptions,
    private readonly observer: RecoveryObserver = unobserved,
  ) {}

  start(): void {
    void this.runOnce();
    this.timer = setInterval(() => void this.runOnce(), this.options.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.round;
  }

  /** One pass over every shard; concurrent callers share the pass in progress. */
  runOnce(): Promise<RecoveryRound> {
    this.round ??= this.pass().finally(() => (this.round = undefined));
    return this.round;
  }

  private async pass(): Promise<RecoveryRound> {
    const tally: RecoveryRound = { committed: 0, rolledBack: 0, inDoubt: 0 };
    const decided = new Map<string, Promise<Decision | undefined>>(); // one decision per gid and pass
    const stillPrepared = new Set<string>();
    let everyShardAnswered = true;
    for (const shard of this.shards.shards) {
      let prepared: { gid: string; ageMs: number }[];
      try {
        prepared = await this.prepared(shard);
      } catch {
        everyShardAnswered = false;
        continue;
      }
      for (const { gid, ageMs } of prepared) {
        stillPrepared.add(gid);
        const settled = await this.settle(shard, gid, ageMs, decided).catch((err) => {
          this.report(() => this.observer.notSettled({ shard: shard.name, gid, error: err }));
          return undefined;
        });
        if (settled) this.report(() => this.observer.settled({ shard: shard.name, gid, decision: settled, ageMs }));
        if (settled === "commit") tally.committed++;
        else if (settled === "abort") tally.rolledBack++;
        else tally.inDoubt++;
      }
    }
    if (this.decisions && everyShardAnswered) await this.markFinished(stillPrepared).catch(() => {});
    this.inDoubt = tally.inDoubt;
    this.report(() => this.observer.round(tally));
    return tally;
  }

  /** A failing observer never stops a recovery round. */
  private report(notify: () => void): void {
    try {
      notify();
    } catch {
      // metrics and logs are best effort
    }
  }

  private async prepared(shard: ShardNodes): Promise<{ gid: string; ageMs: number }[]> {
    const result = await executeStatement({
      shard: shard.name, pool: writerOf(shard), sql: listPrepared, params: [text(this.ids.pattern)],
      signal: AbortSignal.timeout(10_000), budget: newBudget(100_000, 64 << 20),
    });
    return result.rows.map((r) => ({ gid: String(r.values[0].kind.value), ageMs: Number(r.values[1].kind.value) }));
  }

  /** Settles one prepared transaction; undefined when it must be left alone for now. */
  private async settle(shard: ShardNodes, gid: string, ageMs: number, decided: Map<string, Promise<Decision | undefined>>): Promise<Decision | undefined> {
    // Young ones are left to their coordinator, which may still be deciding or committing them.
    if (this.inflight.has(gid) || ageMs < this.options.graceMs) return undefined;
    let decision = decided.get(gid);
    if (!decision) decided.set(gid, (decision = this.decide(gid)));
    const outcome = await decision;
    if (!outcome) return undefined;
    const sql = `${outcome === "commit" ? "commit" : "rollback"} prepared '${assertSafeGid(gid)}'`;
    try {
      await executeStatement({ shard: shard.name, pool: writerOf(shard), sql, params: [], signal: AbortSignal.timeout(30_000), budget: newBudget(1, 1024) });
    } catch (err) {
      // Another router (or the coordinator) finished it between our listing and now.
      if (!/does not exist/.test((err as Error).message)) throw err;
    }
    return outcome;
  }

  /** The catalog's decision if one was logged; else the home shard's, fencing it for an abort. */
  private async decide(gid: string): Promise<Decision | undefined> {
    const logged = await this.decisions?.get(gid);
    if (logged) return logged;
    const answers = await Promise.all(this.shards.shards.map((s) => homeAnswer(s, gid)));
    if (answers.includes("committed")) return "commit";
    return answers.every((a) => a === "fenced") ? "abort" : undefined;
  }

  /** Decisions whose participants no longer hold the transaction are finished. */
  private async markFinished(stillPrepared: ReadonlySet<string>): Promise<void> {
    for (const { gid } of await this.decisions!.unfinished(this.options.graceMs)) {
      if (!stillPrepared.has(gid)) await this.decisions!.complete(gid);
    }
    await this.decisions!.forgetCompleted(24);
  }
}

type HomeAnswer = "committed" | "fenced" | "unknown";

/**
 * What one shard says about a transaction id: its committed request record (this is the home
 * shard and it committed), or our tombstone, now or from an earlier round (this shard can never
 * commit it). "unknown" when the shard did not answer, or a record appeared while we waited.
 */
async function homeAnswer(shard: ShardNodes, gid: string): Promise<HomeAnswer> {
  const run = (sql: string, params: ReturnType<typeof text>[]) => executeStatement({
    shard: shard.name, pool: writerOf(shard), sql, params, signal: AbortSignal.timeout(5_000), budget: newBudget(2, 1 << 16),
  });
  try {
    const found = await run("select request_id from shardrouter.requests where transaction_id = $1", [text(gid)]);
    if (found.rows.length) return found.rows[0].values[0].kind.value === tombstoneId(gid) ? "fenced" : "committed";
    // Waits for a home transaction still open with this id; written, it keeps that one from committing.
    const written = await run(fenceSql, [text(tombstoneId(gid)), bytes(new Uint8Array()), text(gid)]);
    return written.rows.length ? "fenced" : "unknown";
  } catch (err) {
    return isUndefinedTable(err) ? "fenced" : "unknown"; // no request log: never anyone's home
  }
}

const fenceSql = `insert into shardrouter.requests (request_id, request_hash, transaction_id) values ($1, $2, $3)
  on conflict do nothing returning request_id`;
