// Runs one atomic transaction over one or more shards.
//   one shard:  BEGIN … COMMIT, nothing more.
//   several:    BEGIN … on each → PREPARE TRANSACTION on every shard but the home one (the shard
//               holding the request record) → COMMIT of the home shard's local transaction, which
//               is the commit decision: its request record, carrying the transaction id, commits
//               with it → COMMIT PREPARED on the others. A crash anywhere leaves either no committed
//               record (recovery rolls back: presumed abort, fenced by a tombstone record so the home
//               can never commit later) or a committed one (recovery commits). One phase fewer on
//               the home shard and no catalog round trip: the "last participant" optimisation.
// Shards are locked (connections reserved, transactions begun) in one global order, shard name,
// and every lock wait is bounded by lock_timeout, so opposite transfers fail cleanly, never hang.
import { Code, ConnectError } from "@connectrpc/connect";
import type { ResultSet } from "../../gen/shardrouter/v1/value_pb.js";
import { PostgresErrorDetailSchema } from "../../gen/shardrouter/v1/errors_pb.js";
import { type Budget, executeOnReserved, newBudget } from "../execution/shard-executor.js";
import type { RawParam, ReservedConnection } from "../shards/node-pool.js";
import { type ShardNodes, writerOf } from "../shards/shard-set.js";
import type { Failpoints } from "./failpoints.js";
import { bytes, ensureRequestLog, findRequest, insertRequest, isUndefinedTable, type StoredRequest, storeResponse, text } from "./request-log.js";
import type { TransactionIds } from "./transaction-id.js";

export interface TxStatement {
  shard: ShardNodes;
  sql: string;
  params: RawParam[];
  /** Throws (a ConnectError) to abort the whole transaction when a result is not acceptable. */
  check?: (result: ResultSet) => void;
}

export interface TxPlan {
  requestId: string;
  /** Fingerprint of the request without its id: a reused id with other content is refused. */
  requestHash: Uint8Array;
  /** Run in this order; the caller orders them for locking when it can (Transfer does). */
  statements: TxStatement[];
  /** The response to store with the request record, for replays. */
  encodeResponse(outcome: TxOutcome): Uint8Array;
  signal: AbortSignal;
  budget: Budget;
}

export interface TxOutcome { transactionId: string; twoPhase: boolean; shards: string[]; results: ResultSet[] }

export type TxResult = { replayed: false; outcome: TxOutcome } | { replayed: true; response: Uint8Array };

export interface CoordinatorDeps {
  ids: TransactionIds;
  failpoints: Failpoints;
  lockTimeoutMs: number;
  /** Transactions this router is driving right now: recovery leaves them alone. */
  inflight: Set<string>;
  /** Told how each attempt ended (metrics, logs); it changes nothing here. */
  observer?: TransactionObserver;
}

/**
 * How an attempt ended: committed in one or two phases; rolled back (it failed, or never reached a
 * commit); or in doubt (the commit decision could not be recorded, so recovery settles it).
 */
export type TransactionOutcomeKind = "committed_one_phase" | "committed_two_phase" | "rolled_back" | "in_doubt";

export interface TransactionObserver {
  finished(event: { transactionId: string; shards: string[]; outcome: TransactionOutcomeKind }): void;
}

type State = "open" | "prepared" | "done" | "left-for-recovery";
interface Participant { shard: ShardNodes; conn: ReservedConnection; state: State }

class RequestAlreadyApplied extends Error {}

/** Commit and rollback must finish even when the caller has gone away. */
const noDeadline = new AbortController().signal;

export class Coordinator {
  constructor(private readonly deps: CoordinatorDeps) {}

  async run(plan: TxPlan): Promise<TxResult> {
    const participants = [...new Map(plan.statements.map((s) => [s.shard.name, s.shard])).values()]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const home = participants[0];
    // No lookup first: inserting the request record inside the transaction fails (unique key) when
    // the request was applied already, and only then is the stored outcome read and replayed.
    for (let attempt = 0; ; attempt++) {
      try {
        return { replayed: false, outcome: await this.attempt(plan, participants) };
      } catch (err) {
        if (err instanceof RequestAlreadyApplied) {
          const done = await findRequest(home, plan.requestId, plan.signal);
          if (done) return replay(done, plan);
        }
        if (isUndefinedTable(err) && attempt === 0) {
          await ensureRequestLog(home, plan.signal);
          continue;
        }
        throw err;
      }
    }
  }

  private async attempt(plan: TxPlan, shards: ShardNodes[]): Promise<TxOutcome> {
    const { ids, failpoints, inflight } = this.deps;
    const gid = ids.next();
    const twoPhase = shards.length > 1;
    const participants: Participant[] = [];
    inflight.add(gid);
    try {
      for (const shard of shards) participants.push({ shard, conn: await writerOf(shard).reserve(plan.signal), state: "done" });
      const home = participants[0];
      const byShard = new Map(participants.map((p) => [p.shard.name, p]));
      const results: ResultSet[] = [];
      // Each run of statements on one shard, opened first (begin, lock_timeout, and on the home shard
      // the request record); the next run waits for it, so rows are locked in the planned order.
      for (let i = 0; i < plan.statements.length;) {
        const p = byShard.get(plan.statements[i].shard.name)!;
        const run: TxStatement[] = [];
        while (i < plan.statements.length && plan.statements[i].shard === p.shard) run.push(plan.statements[i++]);
        const steps: Step[] = [];
        if (p.state === "done") {
          // Open only once BEGIN has answered: a ROLLBACK sent on a connection whose BEGIN failed can
          // be written to a dead socket (postgres.js 3.4.9 crashes the process; the bank test caught it).
          await inOrder(p, [{ sql: "begin" }], plan);
          p.state = "open";
          steps.push({ sql: "select set_config('lock_timeout', $1, true)", params: [text(`${this.deps.lockTimeoutMs}ms`)] });
          if (p === home) steps.push({ sql: insertRequest, params: [text(plan.requestId), bytes(plan.requestHash), text(gid)], onError: (err) => requestConflict(err, plan.requestId) });
        }
        const answers = await inOrder(p, [...steps, ...run], plan);
        for (const [j, st] of run.entries()) {
          const result = answers[steps.length + j];
          st.check?.(result);
          results.push(result);
        }
      }
      const outcome: TxOutcome = { transactionId: gid, twoPhase, shards: shards.map((s) => s.name), results };
      const store: Step = { sql: storeResponse, params: [text(plan.requestId), bytes(plan.encodeResponse(outcome))] };

      if (!twoPhase) {
        // A COMMIT after a failed statement is answered ROLLBACK, not an error: read the tag.
        const [, committed] = await inOrder(home, [store, { sql: "commit", signal: noDeadline }], plan);
        if (committed.command !== "COMMIT") throw new ConnectError(`${gid} was rolled back by the shard at commit (${committed.command})`, Code.Aborted);
        home.state = "done";
        this.report(gid, outcome.shards, "committed_one_phase");
        return outcome;
      }
      failpoints.hit("before_prepare");
      // PREPARE takes no new locks: every participant but the home one prepares at once.
      const others = participants.slice(1);
      await settleAll(others.map(async (p) => {
        const [prepared] = await inOrder(p, [{ sql: `prepare transaction '${gid}'`, once: true }], plan);
        if (prepared.command !== "PREPARE TRANSACTION") throw new ConnectError(`${gid} was rolled back by shard ${p.shard.name} at prepare (${prepared.command})`, Code.Aborted);
        p.state = "prepared";
      }));
      failpoints.hit("after_prepare");
      await this.commitHome(gid, home, others, store, plan);
      failpoints.hit("after_decision");
      await this.commitPrepared(gid, others);
      this.report(gid, outcome.shards, "committed_two_phase");
      return outcome;
    } catch (err) {
      await this.rollback(gid, participants);
      this.report(gid, participants.map((p) => p.shard.name), participants.some((p) => p.state === "left-for-recovery") ? "in_doubt" : "rolled_back");
      throw err;
    } finally {
      for (const p of participants) p.conn.release();
      inflight.delete(gid);
    }
  }

  /** Tells the observer; a failing observer never changes an outcome. */
  private report(transactionId: string, shards: string[], outcome: TransactionOutcomeKind): void {
    try {
      this.deps.observer?.finished({ transactionId, shards, outcome });
    } catch {
      // metrics and logs are best effort
    }
  }

  /**
   * The commit point: the home shard's local transaction, request record included, commits. A
   * Postgres error is a definite rollback; a lost connection leaves the outcome to recovery, which
   * reads it from the home shard. Never guessed.
   */
  private async commitHome(gid: string, home: Participant, others: Participant[], store: Step, plan: TxPlan): Promise<void> {
    await inOrder(home, [store], plan); // failing, the home transaction is still open: rolled back
    let committed: ResultSet;
    try {
      [committed] = await inOrder(home, [{ sql: "commit", signal: noDeadline }], plan);
    } catch (err) {
      home.state = "done";
      if (err instanceof ConnectError && err.findDetails(PostgresErrorDetailSchema)[0]?.sqlstate) throw err; // Postgres answered: rolled back
      for (const p of others) p.state = "left-for-recovery";
      throw new ConnectError(
        `the commit of ${gid} on its home shard ${home.shard.name} got no answer; recovery will settle it: retry with the same request_id`,
        Code.Unavailable,
      );
    }
    home.state = "done";
    if (committed.command !== "COMMIT") throw new ConnectError(`${gid} was rolled back by shard ${home.shard.name} at commit (${committed.command})`, Code.Aborted);
  }

  /** After the decision: COMMIT PREPARED everywhere; what fails now, recovery finishes. */
  private async commitPrepared(gid: string, participants: Participant[]): Promise<void> {
    const commit = async (p: Participant) => {
      try {
        await executeOnReserved(p.conn, { shard: p.shard.name, sql: `commit prepared '${gid}'`, params: [], signal: noDeadline, budget: newBudget(1, 1024), once: true });
        p.state = "done";
      } catch {
        p.state = "left-for-recovery";
      }
    };
    await commit(participants[0]);
    this.deps.failpoints.hit("after_first_commit");
    await Promise.all(participants.slice(1).map(commit));
  }

  private async rollback(gid: string, participants: Participant[]): Promise<void> {
    await Promise.all(participants.map(async (p) => {
      const sql = p.state === "open" ? "rollback" : p.state === "prepared" ? `rollback prepared '${gid}'` : undefined;
      if (!sql) return;
      try {
        await executeOnReserved(p.conn, { shard: p.shard.name, sql, params: [], signal: noDeadline, budget: newBudget(1, 1024), once: sql !== "rollback" });
        p.state = "done";
      } catch {
        // Unreachable: an open transaction dies with its connection; a prepared one has no
        // commit decision, so recovery rolls it back (presumed abort).
      }
    }));
  }
}

/** One statement of a run; onError explains its failure (the request record's conflicts). */
interface Step { sql: string; params?: RawParam[]; signal?: AbortSignal; once?: boolean; onError?: (err: unknown) => unknown }

/**
 * Runs the steps on the participant's connection one after another, answering their results in
 * order. One statement at a time per reserved connection: pipelined ones hung or crashed the bank
 * test when a shard restarted (postgres.js 3.4.9 queues statements behind a first-use describe
 * inside reserve(), and never settles that queue when the connection closes).
 */
async function inOrder(p: Participant, steps: Step[], plan: Pick<TxPlan, "signal" | "budget">): Promise<ResultSet[]> {
  const results: ResultSet[] = [];
  for (const st of steps) {
    try {
      results.push(await executeOnReserved(p.conn, {
        shard: p.shard.name, sql: st.sql, params: st.params ?? [], signal: st.signal ?? plan.signal, budget: plan.budget, once: st.once,
      }));
    } catch (err) {
      throw st.onError ? st.onError(err) : err;
    }
  }
  return results;
}

/** Waits for every promise, then throws the first failure (none is left unhandled). */
async function settleAll(promises: Promise<void>[]): Promise<void> {
  for (const s of await Promise.allSettled(promises)) if (s.status === "rejected") throw s.reason;
}

function replay(stored: StoredRequest, plan: TxPlan): TxResult {
  if (Buffer.compare(Buffer.from(stored.hash), Buffer.from(plan.requestHash)) !== 0) {
    throw new ConnectError(`request_id "${plan.requestId}" was already used for a different request`, Code.FailedPrecondition);
  }
  if (!stored.response) throw new ConnectError(`request "${plan.requestId}" was applied but its response was not kept`, Code.Internal);
  return { replayed: true, response: stored.response };
}

/** Inserting the request record failed: applied already (unique key), or still running elsewhere (lock wait). */
function requestConflict(err: unknown, requestId: string): unknown {
  const sqlstate = err instanceof ConnectError ? err.findDetails(PostgresErrorDetailSchema)[0]?.sqlstate : undefined;
  if (sqlstate === "23505") return new RequestAlreadyApplied();
  if (sqlstate === "55P03") {
    return new ConnectError(`request "${requestId}" is still being applied by an earlier attempt; retry shortly with the same request_id`, Code.Aborted);
  }
  return err;
}
