// Finds prepared transactions of our prefix on every shard and settles them from their decision:
// the one recorded on the transaction's home shard (its id names it, see transaction-id.ts), or, for
// ids of routers before home decisions, the catalog's decision log. Where there is no decision and the
// transaction is older than the grace period, "abort" is recorded first (insert-if-absent, racing the
// coordinator fairly) and it is rolled back. Transactions this router is driving are never touched.
// Several routers may recover at once: the decision row serialises them, and a COMMIT/ROLLBACK
// PREPARED that finds nothing was done by another.
import { executeStatement, newBudget } from "../execution/shard-executor.js";
import type { Login } from "../shards/node-pool.js";
import { type ShardNodes, type ShardSet, writerOf } from "../shards/shard-set.js";
import type { Decision, DecisionLog } from "./decision-log.js";
import { ensureRequestLog, needsRequestLog, readDecision, recordAbort, text } from "./request-log.js";
import { assertSafeGid, homeOf, type TransactionIds } from "./transaction-id.js";

export interface RecoveryOptions { graceMs: number; intervalMs: number }
export interface RecoveryRound { committed: number; rolledBack: number; inDoubt: number }

/** Told what each round settled and what it could not (metrics, logs); it changes nothing here. */
export interface RecoveryObserver {
  settled(event: { shard: string; gid: string; decision: Decision; ageMs: number }): void;
  notSettled(event: { shard: string; gid: string; error: unknown }): void;
  round(tally: RecoveryRound): void;
}

const unobserved: RecoveryObserver = { settled() {}, notSettled() {}, round() {} };

const listPrepared = `select gid, (extract(epoch from now() - prepared) * 1000)::int8 as age_ms, owner::text
  from pg_prepared_xacts where database = current_database() and gid like $1`;

/**
 * The login of a role that may have prepared transactions (auth: each identity's SQL runs as its
 * own login). Only that role or a superuser may COMMIT or ROLLBACK PREPARED it.
 */
export type LoginOfRole = (role: string) => Login | undefined;

/** Whether two roles are logins of one caller identity (auth: its login differs per shard). */
export type SameCaller = (a: string, b: string, routerUser: string) => boolean;

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
    private readonly loginOf: LoginOfRole = () => undefined,
    private readonly sameCaller: SameCaller = () => false,
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
    const stillPrepared = new Set<string>();
    let everyShardAnswered = true;
    for (const shard of this.shards.shards) {
      let prepared: { gid: string; ageMs: number; owner: string }[];
      try {
        prepared = await this.prepared(shard);
      } catch {
        everyShardAnswered = false;
        continue;
      }
      for (const { gid, ageMs, owner } of prepared) {
        stillPrepared.add(gid);
        const settled = await this.settle(shard, gid, ageMs, owner).catch((err) => {
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

  private async prepared(shard: ShardNodes): Promise<{ gid: string; ageMs: number; owner: string }[]> {
    const result = await executeStatement({
      shard: shard.name, pool: writerOf(shard), sql: listPrepared, params: [text(this.ids.pattern)],
      signal: AbortSignal.timeout(10_000), budget: newBudget(100_000, 64 << 20),
    });
    return result.rows.map((r) => ({ gid: String(r.values[0].kind.value), ageMs: Number(r.values[1].kind.value), owner: String(r.values[2].kind.value) }));
  }

  /** Settles one prepared transaction; undefined when it must be left alone for now. */
  private async settle(shard: ShardNodes, gid: string, ageMs: number, owner: string): Promise<Decision | undefined> {
    // Young ones are left to their coordinator, which may still be deciding or committing them.
    if (this.inflight.has(gid) || ageMs < this.options.graceMs) return undefined;
    const homeName = homeOf(gid);
    // A home this router does not serve (not configured here, or removed) may have committed it:
    // never presume an abort without asking it. It stays in doubt, and shows in GetTopology.
    if (homeName !== undefined && homeName !== shard.name && !this.shards.has(homeName)) return undefined;
    const home = homeName !== undefined && homeName !== shard.name ? this.shards.shard(homeName) : undefined;
    let decision: Decision | undefined;
    if (home) decision = await this.decideOnHome(home, gid, owner);
    else if (this.decisions) decision = (await this.decisions.get(gid)) ?? (await this.decisions.decide(gid, "abort", [], this.ids.routerId));
    if (!decision) return undefined; // an id of a router before home decisions, and no catalog to ask
    const sql = `${decision === "commit" ? "commit" : "rollback"} prepared '${assertSafeGid(gid)}'`;
    // As the role that prepared it (a caller identity's login), or the router's own.
    const writer = writerOf(shard);
    const login = owner === writer.user ? undefined : this.loginOf(owner);
    try {
      await executeStatement({ shard: shard.name, pool: writer, sql, params: [], signal: AbortSignal.timeout(30_000), budget: newBudget(1, 1024), login });
    } catch (err) {
      // Another router (or the coordinator) finished it between our listing and now.
      if (!/does not exist/.test((err as Error).message)) throw err;
    }
    return decision;
  }

  /**
   * The decision on the transaction's home shard: "commit" if the home committed it; otherwise
   * "abort", recorded there first so the home can no longer commit it (its insert of "commit" then
   * fails). The insert waits while a home transaction that wrote the same id is still open.
   */
  private async decideOnHome(home: ShardNodes, gid: string, owner: string): Promise<Decision> {
    const run = (sql: string) => executeStatement({
      shard: home.name, pool: writerOf(home), sql, params: [text(gid)], signal: AbortSignal.timeout(30_000), budget: newBudget(1, 1024),
    });
    let recorded;
    try {
      recorded = await run(recordAbort);
    } catch (err) {
      if (!needsRequestLog(err)) throw err;
      await ensureRequestLog(home, AbortSignal.timeout(30_000)); // no table: the home never committed it
      recorded = await run(recordAbort);
    }
    if (recorded.rows.length) return "abort";
    const stands = (await run(readDecision)).rows[0]?.values;
    if (!stands) return "abort";
    const decision: Decision = String(stands[0].kind.value) === "commit" ? "commit" : "abort";
    // A decision counts only if it was recorded by the transaction's own caller (the role that
    // prepared it, or another login of the same identity) or by a router: callers may insert
    // decisions (their home commits write one), and one could otherwise decide another's transaction.
    const by = stands[1].kind.case === "stringValue" ? stands[1].kind.value : undefined;
    if (by === undefined || (by !== owner && by !== writerOf(home).user && !this.sameCaller(by, owner, writerOf(home).user))) {
      throw new Error(`the decision for ${gid} on its home ${home.name} was recorded by role ${by}, not by the role that prepared it (${owner}): ` +
        "left in doubt for an operator");
    }
    return decision;
  }

  /** Decisions whose participants no longer hold the transaction are finished. */
  private async markFinished(stillPrepared: ReadonlySet<string>): Promise<void> {
    for (const { gid } of await this.decisions!.unfinished(this.options.graceMs)) {
      if (!stillPrepared.has(gid)) await this.decisions!.complete(gid);
    }
    await this.decisions!.forgetCompleted(24);
  }
}
