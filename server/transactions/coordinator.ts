// Runs one atomic transaction over one or more shards.
//   one shard:  BEGIN … COMMIT, nothing more.
//   several:    BEGIN … on each → PREPARE TRANSACTION on each → durable "commit" decision in the
//               catalog → COMMIT PREPARED on each. A crash anywhere leaves either no decision
//               (recovery rolls back: presumed abort) or a commit decision (recovery commits).
// Shards are locked (connections reserved, transactions begun) in one global order, shard name,
// and every lock wait is bounded by lock_timeout, so opposite transfers fail cleanly, never hang.
import { Code, ConnectError } from "@connectrpc/connect";
import type { ResultSet } from "../../gen/shardrouter/v1/value_pb.js";
import { PostgresErrorDetailSchema } from "../../gen/shardrouter/v1/errors_pb.js";
import { type Budget, executeOnReserved, newBudget, reserveOn } from "../execution/shard-executor.js";
import type { RawParam, ReservedConnection } from "../shards/node-pool.js";
import { type ShardNodes, writerOf } from "../shards/shard-set.js";
import type { DecisionLog } from "./decision-log.js";
import type { Failpoints } from "./failpoints.js";
import { bytes, ensureRequestLog, findRequest, insertRequest, needsRequestLog, type StoredRequest, storeResponse, text } from "./request-log.js";
import type { TransactionIds } from "./transaction-id.js";

export interface TxStatement {
  shard: ShardNodes;
  sql: string;
  params: RawParam[];
  /** Throws (a ConnectError) to abort the whole transaction when a result is not acceptable. */
  check?: (result: ResultSet) => void;
  /** The statement guard's "isolated": its shard's transaction runs on a connection closed afterwards. */
  isolated?: boolean;
}

export interface TxPlan {
  requestId: string;
  /**
   * The key the request record is kept under (the least of the transaction's keys, so a retry names
   * the same one), and its shard: one of the statements' shards. A reshard moves the record with it.
   */
  home: { key: string; shard: ShardNodes };
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
  decisions: DecisionLog | undefined;
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
    const home = plan.home.shard;
    if (!participants.some((p) => p.name === home.name)) throw new Error(`the request record's shard ${home.name} is not a participant`);
    if (participants.length > 1 && !this.deps.decisions) {
      throw new ConnectError("a transaction over several shards needs a catalog database for its commit decisions (config field catalog)", Code.FailedPrecondition);
    }
    for (let attempt = 0; ; attempt++) {
      // Again after the log was created or upgraded: a record of its first layout is found then.
      const earlier = await findRequest(home, plan.home.key, plan.requestId, plan.signal);
      if (earlier) return replay(earlier, plan);
      try {
        return { replayed: false, outcome: await this.attempt(plan, participants) };
      } catch (err) {
        if (err instanceof RequestAlreadyApplied) {
          const done = await findRequest(home, plan.home.key, plan.requestId, plan.signal);
          if (done) return replay(done, plan);
          // Committed a moment ago, gone now: a reshard moved it away under this attempt.
          throw new ConnectError(`request "${plan.requestId}" was applied, but its record has just moved: retry with the same request_id`, Code.Aborted);
        }
        if (needsRequestLog(err) && attempt === 0) {
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
    const isolated = new Set(plan.statements.filter((s) => s.isolated).map((s) => s.shard.name));
    const exec = (p: Participant, sql: string, params: RawParam[] = [], signal = plan.signal) =>
      executeOnReserved(p.conn, { shard: p.shard.name, sql, params, signal, budget: plan.budget });
    inflight.add(gid);
    try {
      for (const shard of shards) {
        const conn = await reserveOn(writerOf(shard), shard.name, plan.signal, { isolated: isolated.has(shard.name) });
        const p: Participant = { shard, conn, state: "done" };
        participants.push(p);
        await exec(p, "begin");
        p.state = "open";
        await exec(p, "select set_config('lock_timeout', $1, true)", [text(`${this.deps.lockTimeoutMs}ms`)]);
      }
      const home = participants.find((p) => p.shard.name === plan.home.shard.name)!;
      const recordKey = [text(plan.home.key), text(plan.requestId)];
      await exec(home, insertRequest, [...recordKey, bytes(plan.requestHash), text(gid)]).catch((err) => {
        throw requestConflict(err, plan.requestId);
      });
      const byShard = new Map(participants.map((p) => [p.shard.name, p]));
      const results: ResultSet[] = [];
      for (const st of plan.statements) {
        const result = await exec(byShard.get(st.shard.name)!, st.sql, st.params);
        st.check?.(result);
        results.push(result);
      }
      const outcome: TxOutcome = { transactionId: gid, twoPhase, shards: shards.map((s) => s.name), results };
      await exec(home, storeResponse, [...recordKey, bytes(plan.encodeResponse(outcome))]);

      if (!twoPhase) {
        await exec(home, "commit", [], noDeadline);
        home.state = "done";
        this.report(gid, outcome.shards, "committed_one_phase");
        return outcome;
      }
      failpoints.hit("before_prepare");
      for (const p of participants) {
        await exec(p, `prepare transaction '${gid}'`);
        p.state = "prepared";
      }
      failpoints.hit("after_prepare");
      await this.decideCommit(gid, participants);
      failpoints.hit("after_decision");
      await this.commitPrepared(gid, participants);
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

  /** The commit point. If the catalog's answer is lost, the outcome is left to recovery, never guessed. */
  private async decideCommit(gid: string, participants: Participant[]): Promise<void> {
    let decision;
    try {
      decision = await this.deps.decisions!.decide(gid, "commit", participants.map((p) => p.shard.name), this.deps.ids.routerId);
    } catch {
      for (const p of participants) p.state = "left-for-recovery";
      throw new ConnectError(
        `the commit decision of ${gid} could not be recorded (catalog unreachable); recovery will settle it: retry with the same request_id`,
        Code.Unavailable,
      );
    }
    if (decision === "abort") {
      throw new ConnectError(`${gid} was rolled back by recovery while it waited to commit; retry`, Code.Aborted);
    }
  }

  /** After the decision: COMMIT PREPARED everywhere; what fails now, recovery finishes. */
  private async commitPrepared(gid: string, participants: Participant[]): Promise<void> {
    let all = true;
    for (const [i, p] of participants.entries()) {
      try {
        await executeOnReserved(p.conn, { shard: p.shard.name, sql: `commit prepared '${gid}'`, params: [], signal: noDeadline, budget: newBudget(1, 1024) });
        p.state = "done";
      } catch {
        p.state = "left-for-recovery";
        all = false;
      }
      if (i === 0) this.deps.failpoints.hit("after_first_commit");
    }
    if (all) await this.deps.decisions!.complete(gid).catch(() => {});
  }

  private async rollback(gid: string, participants: Participant[]): Promise<void> {
    await Promise.all(participants.map(async (p) => {
      const sql = p.state === "open" ? "rollback" : p.state === "prepared" ? `rollback prepared '${gid}'` : undefined;
      if (!sql) return;
      try {
        await executeOnReserved(p.conn, { shard: p.shard.name, sql, params: [], signal: noDeadline, budget: newBudget(1, 1024) });
        p.state = "done";
      } catch {
        // Unreachable: an open transaction dies with its connection; a prepared one has no
        // commit decision, so recovery rolls it back (presumed abort).
      }
    }));
  }
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
