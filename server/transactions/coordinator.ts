// Runs one atomic transaction over one or more shards, in as few round trips as Postgres allows.
//   one shard:  BEGIN, the request record, the statements (one write) … the response and COMMIT (one write).
//   several:    the same on each shard, then PREPARE TRANSACTION on every shard but the home one, then
//               the home shard commits in one phase with the decision recorded in its own transaction
//               (shardrouter.commit_decisions), then COMMIT PREPARED on the others. A crash anywhere
//               leaves either no decision (recovery rolls back: presumed abort) or a committed one
//               (recovery commits). The transaction id names the home, so recovery knows where to ask.
// Shards are locked (connections reserved, statements run) in one global order, shard name, and
// every lock wait is bounded by lock_timeout, so opposite transfers fail cleanly, never hang.
import { Code, ConnectError } from "@connectrpc/connect";
import type { ResultSet } from "../../gen/shardrouter/v1/value_pb.js";
import { PostgresErrorDetailSchema } from "../../gen/shardrouter/v1/errors_pb.js";
import { type Budget, executeOnReserved, newBudget, reserveOn } from "../execution/shard-executor.js";
import type { LoginFor, RawParam, ReservedConnection } from "../shards/node-pool.js";
import { type ShardNodes, writerOf } from "../shards/shard-set.js";
import type { Failpoints } from "./failpoints.js";
import { sqlstateOf } from "../execution/postgres-errors.js";
import { bytes, ensureRequestLog, findInTransaction, findRequest, insertRequest, needsRequestLog, recordCommit, type StoredRequest, storeResponse, text } from "./request-log.js";
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
  /** The caller's login on each shard (auth): its transaction runs, and is prepared, under that role. */
  loginFor?: LoginFor;
}

/** Who runs a transaction (auth): its identity and its login on each shard. */
export interface TxCaller { readonly identity: string; readonly loginFor: LoginFor }


export interface TxOutcome { transactionId: string; twoPhase: boolean; shards: string[]; results: ResultSet[] }

export type TxResult = { replayed: false; outcome: TxOutcome } | { replayed: true; response: Uint8Array };

export interface CoordinatorDeps {
  ids: TransactionIds;
  failpoints: Failpoints;
  lockTimeoutMs: number;
  /**
   * How long COMMIT, PREPARE's follow-ups and ROLLBACK may take once the caller's deadline no longer
   * applies (they must finish even if the caller left): past it the connection is closed, and what
   * was prepared is left to recovery, so a paused node never holds a transaction's slots for good.
   */
  settleTimeoutMs: number;
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

/** Codes a caller retries with the same request_id anyway: no need to look for an earlier attempt. */
const retryLater = new Set([Code.Unavailable, Code.Aborted, Code.DeadlineExceeded, Code.Canceled, Code.ResourceExhausted]);


export class Coordinator {
  constructor(private readonly deps: CoordinatorDeps) {}

  async run(plan: TxPlan): Promise<TxResult> {
    const participants = [...new Map(plan.statements.map((s) => [s.shard.name, s.shard])).values()]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const home = plan.home.shard;
    if (!participants.some((p) => p.name === home.name)) throw new Error(`the request record's shard ${home.name} is not a participant`);
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.attempt(plan, participants);
      } catch (err) {
        if (err instanceof RequestAlreadyApplied) {
          const done = await findRequest(home, plan.home.key, plan.requestId, plan.signal);
          if (done) return replay(done, plan);
          // Committed a moment ago, gone now: a reshard moved it away under this attempt.
          throw new ConnectError(`request "${plan.requestId}" was applied, but its record has just moved: retry with the same request_id`, Code.Aborted);
        }
        // Again after the log was created or upgraded: a record of its first layout is found then.
        if (needsRequestLog(err) && attempt === 0) {
          await ensureRequestLog(home, plan.signal);
          continue;
        }
        // A definite refusal (say, insufficient funds, from a shard before the home one, so before the
        // record was read) is the answer only if this request was not applied before: then its answer
        // is the replay. Unable to ask, the router cannot tell which, so the caller retries.
        if (err instanceof ConnectError && !retryLater.has(err.code)) {
          const earlier = await findRequest(home, plan.home.key, plan.requestId, plan.signal).catch(() => {
            throw new ConnectError(
              `shard ${home.name} could not be asked whether request "${plan.requestId}" was applied before, so its refusal (${err.rawMessage}) is not final: retry with the same request_id`,
              Code.Unavailable,
            );
          });
          if (earlier) return replay(earlier, plan);
        }
        throw err;
      }
    }
  }

  /**
   * One attempt, in as few round trips as the protocol allows. Each shard's work goes out in one
   * write (BEGIN, lock_timeout, on the home shard the request record, then its statements), shard
   * after shard in the global order, so row locks across shards are taken in one order too. Then
   * one shard commits (with the response stored, in one write), or every shard prepares at once,
   * the decision is recorded, and every shard commits.
   */
  private async attempt(plan: TxPlan, shards: ShardNodes[]): Promise<TxResult> {
    const { ids, failpoints, inflight } = this.deps;
    const twoPhase = shards.length > 1;
    const gid = twoPhase ? ids.next(plan.home.shard.name) : ids.next();
    const participants: Participant[] = [];
    const isolated = new Set(plan.statements.filter((s) => s.isolated).map((s) => s.shard.name));
    const send = (p: Participant, sql: string, params: RawParam[] = [], opts: { once?: boolean; signal?: AbortSignal } = {}) =>
      executeOnReserved(p.conn, { shard: p.shard.name, sql, params, signal: opts.signal ?? plan.signal, budget: plan.budget, once: opts.once });
    inflight.add(gid);
    try {
      for (const shard of shards) {
        const conn = await reserveOn(writerOf(shard), shard.name, plan.signal, { isolated: isolated.has(shard.name), login: plan.loginFor?.(shard.name) });
        participants.push({ shard, conn, state: "done" });
      }
      const recordKey = [text(plan.home.key), text(plan.requestId)];
      const results = new Array<ResultSet>(plan.statements.length);
      for (const p of participants) {
        const isHome = p.shard.name === plan.home.shard.name;
        const mine = plan.statements.map((st, i) => ({ st, i })).filter(({ st }) => st.shard.name === p.shard.name);
        p.state = "open"; // from the BEGIN on: whatever happens next, it is rolled back on failure
        const sent = [send(p, "begin"), send(p, "select set_config('lock_timeout', $1, true)", [text(`${this.deps.lockTimeoutMs}ms`)])];
        const found = isHome ? send(p, findInTransaction, recordKey) : undefined;
        const recorded = isHome ? send(p, insertRequest, [...recordKey, bytes(plan.requestHash), text(gid)]) : undefined;
        const ran = mine.map(({ st }) => send(p, st.sql, st.params));
        // Back to the session's own login after the caller's statements, in the same write: a function
        // of the caller's that switched roles (SET LOCAL ROLE) must not be who writes the response, the
        // decision (prepared_by is current_user) or owns the prepared transaction, which only its owner
        // (or a superuser) may finish: not the caller's login, not recovery.
        const reset = send(p, "reset role");
        const { values: [, earlier, , ...rest], failed } = await settleInOrder<ResultSet | undefined>([Promise.all(sent).then(() => undefined), found, recorded, ...ran, reset]);
        const outcomes = rest.slice(0, ran.length);
        if (failed) throw failed.index === 2 ? requestConflict(failed.reason, plan.requestId) : failed.reason;
        const stored = earlier?.rows[0];
        if (stored) {
          // Applied before (a record of the log's first layout, which the insert cannot collide with).
          await this.rollback(gid, participants);
          return replay({ hash: stored.values[0].kind.value as Uint8Array, response: stored.values[1].kind.case === "bytesValue" ? stored.values[1].kind.value : undefined }, plan);
        }
        mine.forEach(({ st, i }, j) => {
          st.check?.(outcomes[j]!);
          results[i] = outcomes[j]!;
        });
      }
      const home = participants.find((p) => p.shard.name === plan.home.shard.name)!;
      const outcome: TxOutcome = { transactionId: gid, twoPhase, shards: shards.map((s) => s.name), results };
      const response = send(home, storeResponse, [...recordKey, bytes(plan.encodeResponse(outcome))]);

      if (!twoPhase) {
        const commit = send(home, "commit", [], { signal: this.settling() });
        const { values: [, committed], failed } = await settleInOrder([response, commit]);
        if (failed?.index === 1) throw commitOutcomeUnknown(home, plan.requestId, failed.reason);
        if (failed) throw failed.reason;
        home.state = "done";
        expectTag(committed!, "COMMIT", home.shard.name);
        this.report(gid, outcome.shards, "committed_one_phase");
        return { replayed: false, outcome };
      }
      // Every shard but the home prepares; the home stores the response meanwhile. Then the home
      // commits in one phase with the decision in its own transaction: that COMMIT is the commit
      // point, and no catalog is asked. Recovery reads the decision where the id says (homeOf).
      const others = participants.filter((p) => p !== home);
      failpoints.hit("before_prepare");
      const prepares = others.map((p) => send(p, `prepare transaction '${gid}'`, [], { once: true }));
      const { values: [, ...prepared], failed } = await settleInOrder([response, ...prepares]);
      others.forEach((p, i) => {
        // Answered PREPARE TRANSACTION: prepared. Answered ROLLBACK, or failed: nothing is left open.
        // Unanswered (the connection was lost): maybe prepared; recovery finds it if so.
        if (prepared[i]) p.state = prepared[i]!.command === "PREPARE TRANSACTION" ? "prepared" : "done";
      });
      if (failed) throw failed.reason;
      others.forEach((p, i) => expectTag(prepared[i]!, "PREPARE TRANSACTION", p.shard.name));
      failpoints.hit("after_prepare");
      await this.commitHome(gid, home, others, plan.requestId);
      failpoints.hit("after_decision");
      await this.commitPrepared(gid, others);
      this.report(gid, outcome.shards, "committed_two_phase");
      return { replayed: false, outcome };
    } catch (err) {
      await this.rollback(gid, participants);
      this.report(gid, participants.map((p) => p.shard.name), participants.some((p) => p.state === "left-for-recovery") ? "in_doubt" : "rolled_back");
      throw err;
    } finally {
      for (const p of participants) p.conn.release();
      inflight.delete(gid);
    }
  }

  /** The deadline of a statement that settles a transaction (see settleTimeoutMs). */
  private settling(): AbortSignal {
    return AbortSignal.timeout(this.deps.settleTimeoutMs);
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
   * The commit point: the home shard records "commit" and commits, in one write. A COMMIT answered
   * ROLLBACK, or a decision refused because recovery recorded "abort" first, committed nothing: the
   * prepared shards are rolled back. Any other failure leaves the outcome unknown here (a FATAL such
   * as 57P01 at a shutdown can follow a COMMIT that is already durable), so the prepared shards are
   * left to recovery, which asks the home what stands.
   */
  private async commitHome(gid: string, home: Participant, others: Participant[], requestId: string): Promise<void> {
    const send = (sql: string, params: RawParam[]) =>
      executeOnReserved(home.conn, { shard: home.shard.name, sql, params, signal: this.settling(), budget: newBudget(1, 1024) });
    const { values: [, committed], failed } = await settleInOrder([send(recordCommit, [text(gid)]), send("commit", [])]);
    home.state = "done"; // committed, rolled back, or gone with its connection: nothing to roll back
    if (failed?.index === 0 && sqlstateOf(failed.reason) === "23505" && committed?.command === "ROLLBACK") {
      throw new ConnectError(`${gid} was rolled back by recovery while it waited to commit; retry`, Code.Aborted);
    }
    if (failed) {
      for (const p of others) if (p.state === "prepared") p.state = "left-for-recovery";
      throw new ConnectError(
        `shard ${home.shard.name} did not confirm the commit of request "${requestId}" (${failed.reason instanceof ConnectError ? failed.reason.rawMessage : String(failed.reason)}), so whether it was applied is unknown; recovery settles it: retry with the same request_id (it is applied at most once)`,
        Code.Unavailable,
      );
    }
    expectTag(committed!, "COMMIT", home.shard.name);
  }

  /** After the decision: COMMIT PREPARED everywhere; what fails now, recovery finishes. */
  private async commitPrepared(gid: string, participants: Participant[]): Promise<void> {
    const commit = async (p: Participant) => {
      try {
        const done = await executeOnReserved(p.conn, { shard: p.shard.name, sql: `commit prepared '${gid}'`, params: [], signal: this.settling(), budget: newBudget(1, 1024), once: true });
        p.state = "done";
        expectTag(done, "COMMIT PREPARED", p.shard.name);
      } catch {
        p.state = "left-for-recovery";
      }
    };
    // The first alone, so the after_first_commit failpoint finds one committed and the rest prepared.
    const [first, ...rest] = participants;
    await commit(first);
    this.deps.failpoints.hit("after_first_commit");
    await Promise.all(rest.map(commit));
  }

  private async rollback(gid: string, participants: Participant[]): Promise<void> {
    await Promise.all(participants.map(async (p) => {
      const sql = p.state === "open" ? "rollback" : p.state === "prepared" ? `rollback prepared '${gid}'` : undefined;
      if (!sql) return;
      try {
        await executeOnReserved(p.conn, { shard: p.shard.name, sql, params: [], signal: this.settling(), budget: newBudget(1, 1024), once: p.state === "prepared" });
        p.state = "done";
      } catch {
        // Unreachable: an open transaction dies with its connection; a prepared one has no
        // commit decision, so recovery rolls it back (presumed abort).
      }
    }));
  }
}

/** Awaits every promise (so none goes unhandled): the values, and the first failure in order. */
async function settleInOrder<T>(steps: (Promise<T> | undefined)[]): Promise<{ values: (T | undefined)[]; failed?: { index: number; reason: unknown } }> {
  const out = await Promise.allSettled(steps);
  const values = out.map((r) => (r.status === "fulfilled" ? r.value : undefined));
  const index = out.findIndex((r) => r.status === "rejected");
  return index < 0 ? { values } : { values, failed: { index, reason: (out[index] as PromiseRejectedResult).reason } };
}

/**
 * Postgres answers COMMIT or PREPARE TRANSACTION in a transaction that an earlier error aborted with
 * the tag ROLLBACK, not an error: the work was not applied.
 */
function expectTag(result: ResultSet, tag: string, shard: string): void {
  if (result.command !== tag) {
    throw new ConnectError(`shard ${shard} rolled the transaction back (it answered ${result.command || "nothing"} to ${tag}); retry`, Code.Aborted);
  }
}

/**
 * A one-phase COMMIT that got no answer (the connection was lost, or it outlived settleTimeoutMs):
 * it may have committed. The request record decides: a retry with the same request_id replays it
 * if it did, applies it if it did not. A COMMIT that Postgres refused committed nothing.
 */
function commitOutcomeUnknown(p: Participant, requestId: string, reason: unknown): unknown {
  p.state = "done"; // either way nothing is left open to roll back
  if (sqlstateOf(reason)) return reason;
  return new ConnectError(
    `shard ${p.shard.name} did not answer the COMMIT of request "${requestId}", so whether it was applied is unknown: retry with the same request_id (it is applied at most once)`,
    Code.Unavailable,
  );
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
