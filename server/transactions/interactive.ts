// Interactive transactions: BeginTransaction reserves one connection on the primary of the key's
// shard (under the caller's login, its breaker and admission slot, like ExecuteTransaction) and sends
// BEGIN; the caller then sends statements one call at a time (ExecuteInTransaction) and ends it with
// CommitTransaction or RollbackTransaction. The router keeps the connection in a table keyed by an
// opaque token, bound to the identity that began it.
//
// Every session ends exactly once, through one of two doors: `closeInTurn` (commit, rollback, a key
// that moved, a stale epoch: on the session's queue, so nothing else runs on the connection) or
// `abandon` (idle timeout, max lifetime, shutdown, lost connection: the running statement is
// cancelled, then the same steps run after it). Both take the session out of the table, roll back
// what is open, and hand the connection back through `release`, which is the only place counts,
// metrics and the connection's release happen, guarded by the session's state.
import { randomBytes } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { IsolationLevel } from "../../gen/shardrouter/v1/transactions_pb.js";
import type { ResultSet } from "../../gen/shardrouter/v1/value_pb.js";
import type { Caller } from "../auth/caller.js";
import type { Planner } from "../execution/planner.js";
import { sqlstateOf } from "../execution/postgres-errors.js";
import { executeOnReserved, newBudget, reserveOn } from "../execution/shard-executor.js";
import { staleEpochSqlstate } from "../resharding/epoch-guard.js";
import type { WriteFence } from "../resharding/write-fence.js";
import { abortError } from "../shards/admission.js";
import type { NodePool, RawParam, ReservedConnection } from "../shards/node-pool.js";
import { writerOf } from "../shards/shard-set.js";
import { checkTransactionStatement } from "../sql/statement-guard.js";
import { isReadOnly } from "../sql/statement-kind.js";

/** Why a session ended (a metric label). */
export type EndReason = "commit" | "rollback" | "idle_timeout" | "lifetime" | "error" | "shutdown";
export const endReasons: readonly EndReason[] = ["commit", "rollback", "idle_timeout", "lifetime", "error", "shutdown"];

/** transactions.interactive, with maxPerNode resolved. */
export interface InteractiveLimits {
  max: number;
  maxPerNode: number;
  idleTimeoutMs: number;
  maxIdleTimeoutMs: number;
  maxLifetimeMs: number;
}

export interface InteractiveObserver {
  ended(event: { shard: string; node: string; reason: EndReason; ageMs: number; identity?: string }): void;
}

export interface InteractiveDeps {
  planner: Planner;
  /** This router instance's id: the first part of every token, so a misrouted call can say so. */
  routerId: string;
  limits: InteractiveLimits;
  /** Per statement, as for ExecuteOnShard. */
  results: { maxRows: number; maxBytes: number };
  /** How long COMMIT and ROLLBACK may take once the caller's deadline no longer applies (see Coordinator). */
  settleTimeoutMs: number;
  /** Holds writes to keys a resharding cutover moves (routers with a catalog). */
  fence?: WriteFence;
  /** A shard refused a write for a stale shard map: look for the new one. */
  onStaleMap?: () => Promise<void>;
  observer?: InteractiveObserver;
}

export interface BeginOptions { key: string; readOnly: boolean; isolation: IsolationLevel; idleTimeoutMs: number }

/** Calls waiting on one session at most (beyond: resource_exhausted): a queue, bounded. */
const maxQueued = 64;
/** Ended tokens remembered to say why a later call finds nothing (bounded; oldest forgotten first). */
const maxTombstones = 10_000;
const tombstoneMs = 15 * 60_000;

type State = "open" | "closing" | "closed";

interface Session {
  readonly token: string;
  /** The identity that began it ("" without auth): nobody else can see it. */
  readonly owner: string;
  readonly key: string;
  readonly shard: string;
  readonly node: NodePool;
  readonly conn: ReservedConnection;
  readonly readOnly: boolean;
  readonly idleTimeoutMs: number;
  readonly startedAt: number;
  /** The shard map version under which the key was last seen on this shard. */
  mapVersion: number;
  state: State;
  /** Calls queued or running: the idle timer runs only while there are none. */
  calls: number;
  /** Settles when the last call queued so far has settled: each call runs after it. */
  tail: Promise<void>;
  idleTimer?: NodeJS.Timeout;
  lifetimeTimer?: NodeJS.Timeout;
  /** Aborted when the router ends the session under a call (lifetime, shutdown): cancels its statement. */
  readonly ending: AbortController;
  /** It ran a statement the guard contains: its connection is closed at the end, never reused. */
  contained: boolean;
  /** A read-only session ran more than a SELECT (a LOCK TABLE, code the guard cannot read): it may hold a lock a cutover waits for. */
  mayLock?: boolean;
  /** The connection closed under the session: Postgres rolled back; nothing is to be sent on it. */
  lost?: boolean;
  /** How the last statement that reached Postgres failed ("SQLSTATE 22012"): it aborted the transaction. */
  failedWith?: string;
  /** Settles once the connection is released. */
  readonly done: Promise<void>;
  readonly markDone: () => void;
}

interface Tombstone { owner: string; shard: string; message: string; rolledBack: boolean; at: number }

export class InteractiveTransactions {
  private readonly sessions = new Map<string, Session>();
  /** Sessions holding a connection (open or being rolled back): what the limits and the gauge count. */
  private readonly live = new Set<Session>();
  private readonly perNode = new Map<NodePool, number>();
  private readonly tombstones = new Map<string, Tombstone>();
  /** Begins under way (counted against max before they reserve anything). */
  private opening = 0;
  private closing = false;

  constructor(private readonly deps: InteractiveDeps) {
    // A cutover's SHARE lock on the moving tables waits for every open write on them: a writable
    // session on a moving key is rolled back as soon as the fence holds here (it could not commit
    // under the new map anyway), so it never holds the cutover up. Read-only ones hold no such
    // lock unless they took one (READ ONLY allows LOCK TABLE in any mode); the others end at their
    // next call if the key did move (ensureOwner).
    deps.fence?.onHold((moves) => {
      for (const s of this.sessions.values()) {
        if ((s.readOnly && !s.mayLock) || !moves(s.key)) continue;
        void this.abandon(s, "error", "the interactive transaction was rolled back: a resharding cutover is moving its key to another shard; nothing of it was committed: begin it again");
      }
    });
  }

  /** Sessions holding a connection now, by shard (the open gauge). */
  openByShard(): Map<string, number> {
    const out = new Map<string, number>();
    for (const s of this.live) out.set(s.shard, (out.get(s.shard) ?? 0) + 1);
    return out;
  }

  get open(): number {
    return this.live.size;
  }

  async begin(opts: BeginOptions, caller: Caller | undefined, signal: AbortSignal): Promise<{ token: string; shard: string; idleTimeoutMs: number; maxLifetimeMs: number }> {
    const { limits, planner, fence } = this.deps;
    if (!opts.key) throw new ConnectError("key is required: it names the shard the transaction runs on", Code.InvalidArgument);
    if (this.closing) throw new ConnectError("the router is shutting down: begin the transaction on another router instance", Code.Unavailable);
    if (limits.max === 0) throw new ConnectError("interactive transactions are turned off on this router (transactions.interactive.max is 0)", Code.FailedPrecondition);
    const held = this.live.size + this.opening;
    if (held >= limits.max) {
      throw new ConnectError(
        `${held} interactive transactions are open on this router, its limit (transactions.interactive.max = ${limits.max}): commit or roll back others first, or raise the limit`,
        Code.ResourceExhausted);
    }
    const idleTimeoutMs = Math.min(opts.idleTimeoutMs || limits.idleTimeoutMs, limits.maxIdleTimeoutMs);
    const begin = beginSql(opts);
    this.opening++;
    let releaseFence: (() => void) | undefined;
    let node: NodePool | undefined;
    let conn: ReservedConnection | undefined;
    try {
      // As for a write of ExecuteOnShard: held while a cutover moves the key, then routed afresh.
      if (!opts.readOnly && fence) releaseFence = await fence.admit([opts.key], signal);
      const map = planner.map;
      const { shard } = await planner.route(opts.key, map);
      const writer = writerOf(shard);
      const onNode = this.perNode.get(writer) ?? 0;
      if (onNode >= limits.maxPerNode) {
        throw new ConnectError(
          `node ${writer.name} of shard ${shard.name} has ${onNode} interactive transactions open, its limit (transactions.interactive.maxPerNode = ${limits.maxPerNode}), ` +
          "which keeps connections for other statements: commit or roll back others first", Code.ResourceExhausted);
      }
      this.perNode.set(writer, onNode + 1);
      node = writer;
      conn = await reserveOn(writer, shard.name, signal, { login: caller?.loginFor(shard.name) });
      // BEGIN and a backstop in one write: should this router stop serving the connection without
      // closing it (frozen, cut off), Postgres ends the session itself once it is idle well past the
      // router's own timeout. Local to the transaction, so it leaves with it.
      const budget = newBudget(16, 64 * 1024);
      const send = (sql: string, params: RawParam[] = []) => executeOnReserved(conn!, { shard: shard.name, sql, params, signal, budget });
      const steps = await Promise.allSettled([
        send(begin),
        send("select set_config('idle_in_transaction_session_timeout', $1, true)", [{ text: `${idleTimeoutMs + Math.max(idleTimeoutMs, 10_000)}ms`, oid: 0 }]),
      ]);
      const failed = steps.find((r) => r.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
      // close() began meanwhile: it saw no such session, so none may start now.
      if (this.closing) throw new ConnectError("the router is shutting down: begin the transaction on another router instance", Code.Unavailable);
      const token = `${this.deps.routerId}.${randomBytes(16).toString("base64url")}`;
      let markDone!: () => void;
      const session: Session = {
        token, owner: caller?.identity ?? "", key: opts.key, shard: shard.name, node: writer, conn,
        readOnly: opts.readOnly, idleTimeoutMs, startedAt: Date.now(), mapVersion: map.version,
        state: "open", calls: 0, tail: Promise.resolve(), ending: new AbortController(), contained: false,
        done: new Promise<void>((resolve) => { markDone = resolve; }), markDone: () => markDone(),
      };
      this.sessions.set(token, session);
      this.live.add(session);
      conn.onLost(() => {
        session.lost = true; // nothing more is sent on it (a statement meeting a closed socket would mark the node down)
        void this.abandon(session, "error",
        `the interactive transaction was rolled back: its connection to shard ${session.shard} (node ${writer.name}) was lost, and Postgres rolls back an open transaction when its connection closes`);
      });
      session.lifetimeTimer = setTimeout(() => void this.abandon(session, "lifetime",
        `the interactive transaction was rolled back when it reached its max lifetime of ${limits.maxLifetimeMs} ms (transactions.interactive.maxLifetimeMs): nothing of it was committed`), limits.maxLifetimeMs);
      session.lifetimeTimer.unref();
      this.armIdle(session);
      conn = undefined; // the session owns it now
      node = undefined;
      return { token, shard: shard.name, idleTimeoutMs, maxLifetimeMs: limits.maxLifetimeMs };
    } finally {
      this.opening--;
      releaseFence?.();
      // Failed before the session existed: nothing was committed; the connection is closed (Postgres
      // rolls back a BEGIN it may have run) and the node's count given back.
      conn?.release({ close: true });
      if (node) this.perNode.set(node, (this.perNode.get(node) ?? 1) - 1);
    }
  }

  async execute(token: string, sql: string, params: RawParam[], caller: Caller | undefined, signal: AbortSignal): Promise<{ result: ResultSet; shard: string }> {
    const s = this.find(token, caller);
    const containment = checkTransactionStatement(sql);
    return this.call(s, signal, async (callSignal) => {
      this.ensureOpen(s);
      await this.ensureOwner(s);
      // A write is admitted like one of ExecuteOnShard: held while a cutover moves the key; after
      // a hold the key may belong to another shard now, and the transaction cannot follow it.
      const writes = !s.readOnly && this.deps.fence !== undefined && !isReadOnly(sql);
      const releaseFence = writes ? await this.deps.fence!.admit([s.key], callSignal) : undefined;
      try {
        if (writes) await this.ensureOwner(s);
        if (containment === "isolated") s.contained = true;
        if (s.readOnly && !isReadOnly(sql)) s.mayLock = true;
        const result = await executeOnReserved(s.conn, {
          shard: s.shard, sql, params, signal: callSignal, budget: newBudget(this.deps.results.maxRows, this.deps.results.maxBytes),
        }).catch((err: unknown) => {
          // Any failure of a statement that reached Postgres aborts its transaction (a cancel too).
          const sqlstate = sqlstateOf(err);
          s.failedWith = sqlstate ? `SQLSTATE ${sqlstate}` : `it ended with ${Code[ConnectError.from(err).code]}`;
          throw err;
        });
        return { result, shard: s.shard };
      } catch (err) {
        if (sqlstateOf(err) === staleEpochSqlstate) {
          void this.deps.onStaleMap?.().catch(() => {});
          const why = `shard ${s.shard} refused a write because this router's shard map is older than the shard's (a resharding cutover moved keys)`;
          await this.closeInTurn(s, "error", `the interactive transaction was rolled back: ${why}`, "rollback");
          throw new ConnectError(`the interactive transaction was rolled back: ${why}; nothing of it was committed: begin it again`, Code.Aborted);
        }
        throw err;
      } finally {
        releaseFence?.();
      }
    });
  }

  async commit(token: string, caller: Caller | undefined, signal: AbortSignal): Promise<{ shard: string }> {
    const s = this.find(token, caller);
    return this.call(s, signal, async () => {
      this.ensureOpen(s);
      await this.ensureOwner(s);
      // Ended while ensureOwner waited (lifetime, a fence, shutdown)? Then it was rolled back: no COMMIT.
      // From here to closeInTurn's retire nothing awaits, so nothing else can end it in between.
      this.ensureOpen(s);
      let tag: string;
      try {
        tag = (await this.closeInTurn(s, "commit", "the interactive transaction has already been committed", "commit")).command;
      } catch (err) {
        if (sqlstateOf(err)) {
          // Postgres refused the COMMIT (a deferred constraint, a serialization failure): it rolled back.
          this.remember(s, true, `the interactive transaction was rolled back: its COMMIT failed (SQLSTATE ${sqlstateOf(err)})`);
          throw err;
        }
        this.remember(s, false, `the outcome of the interactive transaction's COMMIT is unknown: shard ${s.shard} did not answer it`);
        throw new ConnectError(
          `shard ${s.shard} did not answer the COMMIT of the interactive transaction (its connection was lost or the node did not answer within ${this.deps.settleTimeoutMs} ms): ` +
          "whether it committed is unknown; check for its writes before retrying", Code.Unavailable);
      }
      if (tag !== "COMMIT") {
        // Postgres answers COMMIT with ROLLBACK in a transaction an earlier error aborted.
        const why = `a statement in it failed earlier (${s.failedWith ?? "no failure seen by the router"}), which aborts a Postgres transaction`;
        this.remember(s, true, `the interactive transaction was rolled back when it was committed: ${why}`);
        throw new ConnectError(
          `shard ${s.shard} rolled the interactive transaction back instead of committing it (it answered ${tag || "nothing"} to COMMIT): ${why}; nothing of it was committed. ` +
          "Roll back to a savepoint before committing, or begin the transaction again", Code.Aborted);
      }
      return { shard: s.shard };
    });
  }

  async rollback(token: string, caller: Caller | undefined, signal: AbortSignal): Promise<{ shard: string; wasOpen: boolean }> {
    const s = this.sessions.get(token);
    if (!s || s.owner !== ownerOf(caller)) {
      // Rolling back what already ended without committing is no error: the caller's cleanup path.
      const t = this.tombstone(token, caller);
      if (t?.rolledBack) return { shard: t.shard, wasOpen: false };
      throw this.notFound(token, caller);
    }
    try {
      return await this.call(s, signal, async () => {
        this.ensureOpen(s);
        // A ROLLBACK that got no answer closed the connection, which rolls back just the same.
        await this.closeInTurn(s, "rollback", "the interactive transaction has already been rolled back", "rollback").catch(() => {});
        return { shard: s.shard, wasOpen: true };
      });
    } catch (err) {
      // Ended by the router while this call waited (lifetime, shutdown, lost connection): rolled back.
      const t = this.tombstone(token, caller);
      if (s.state !== "open" && t?.rolledBack) return { shard: s.shard, wasOpen: false };
      throw err;
    }
  }

  /** Rolls back every open session and releases its connection (router shutdown). */
  async close(): Promise<void> {
    this.closing = true;
    const message = "the interactive transaction was rolled back: the router is shutting down";
    await Promise.all([...this.live].map((s) => this.abandon(s, "shutdown", message)));
  }

  /** The open session of `token` for this caller, or NOT_FOUND (the same answer for another identity's). */
  private find(token: string, caller: Caller | undefined): Session {
    const s = this.sessions.get(token);
    if (s && s.owner === ownerOf(caller)) return s;
    throw this.notFound(token, caller);
  }

  private notFound(token: string, caller: Caller | undefined): ConnectError {
    const t = this.tombstone(token, caller);
    if (t) return new ConnectError(t.message, Code.NotFound);
    const issuer = token.includes(".") ? token.slice(0, token.indexOf(".")) : "";
    if (issuer && issuer !== this.deps.routerId) {
      return new ConnectError(
        `no interactive transaction has this token here: it was issued by router instance "${issuer}", and this is "${this.deps.routerId}"; ` +
        "send every call of an interactive transaction to the router instance that began it", Code.NotFound);
    }
    return new ConnectError("no interactive transaction has this token on this router: it never existed, belongs to another identity, or ended long ago", Code.NotFound);
  }

  private tombstone(token: string, caller: Caller | undefined): Tombstone | undefined {
    const t = this.tombstones.get(token);
    if (!t || t.owner !== ownerOf(caller)) return undefined;
    if (Date.now() - t.at > tombstoneMs) return undefined;
    return t;
  }

  /** What a later call on the ended token is told (bounded: the oldest are forgotten first). */
  private remember(s: Session, rolledBack: boolean, message: string): void {
    this.tombstones.delete(s.token);
    const now = Date.now();
    for (const [token, t] of this.tombstones) {
      if (this.tombstones.size < maxTombstones && now - t.at <= tombstoneMs) break;
      this.tombstones.delete(token);
    }
    this.tombstones.set(s.token, { owner: s.owner, shard: s.shard, message, rolledBack, at: now });
  }

  private ensureOpen(s: Session): void {
    if (s.state !== "open") throw new ConnectError(this.tombstones.get(s.token)?.message ?? "the interactive transaction has ended", Code.NotFound);
  }

  /**
   * The key still belongs to the session's shard under the map in force; if a cutover moved it, the
   * session is rolled back (its reads would be stale, its writes must not land on the old owner).
   */
  private async ensureOwner(s: Session): Promise<void> {
    const map = this.deps.planner.map;
    if (map.version === s.mapVersion) return;
    const { shard } = await this.deps.planner.route(s.key, map);
    if (shard.name === s.shard) {
      s.mapVersion = map.version;
      return;
    }
    const why = `its key moved to shard ${shard.name} in shard map version ${map.version} (a resharding cutover)`;
    await this.closeInTurn(s, "error", `the interactive transaction was rolled back: ${why}`, "rollback");
    throw new ConnectError(`the interactive transaction was rolled back: ${why}; nothing of it was committed: begin it again`, Code.Aborted);
  }

  /**
   * Runs `work` when every call queued before it has settled, so a session's statements run one at a
   * time in arrival order, and a cancel never reaches the next one. A call whose deadline passes
   * while it waits leaves the queue without running.
   */
  private async call<T>(s: Session, signal: AbortSignal, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (s.calls >= maxQueued) {
      throw new ConnectError(`${s.calls} calls are already queued on this interactive transaction (at most ${maxQueued}): wait for their answers`, Code.ResourceExhausted);
    }
    s.calls++;
    clearTimeout(s.idleTimer);
    const callSignal = AbortSignal.any([signal, s.ending.signal]);
    const turn = s.tail;
    const run = waitTurn(turn, callSignal).then(() => work(callSignal));
    s.tail = Promise.all([turn, run.catch(() => {})]).then(() => {});
    try {
      return await run;
    } finally {
      s.calls--;
      this.armIdle(s);
    }
  }

  /** The idle timeout counts from the end of the last call. */
  private armIdle(s: Session): void {
    if (s.state !== "open" || s.calls > 0) return;
    clearTimeout(s.idleTimer);
    s.idleTimer = setTimeout(() => void this.abandon(s, "idle_timeout",
      `the interactive transaction was rolled back after ${s.idleTimeoutMs} ms idle (its idle timeout): nothing of it was committed`), s.idleTimeoutMs);
    s.idleTimer.unref();
  }

  /** Out of the table and the timers (a later call learns why from the tombstone); the connection is still held. */
  private retire(s: Session, reason: EndReason, message: string): boolean {
    if (s.state !== "open") return false;
    s.state = "closing";
    this.sessions.delete(s.token);
    clearTimeout(s.idleTimer);
    clearTimeout(s.lifetimeTimer);
    // A commit's outcome is settled by its answer (commit() remembers it again then); until then it counts as not rolled back.
    this.remember(s, reason !== "commit", message);
    return true;
  }

  /**
   * Ends the session from its own turn on the queue: COMMIT or ROLLBACK under the settle deadline
   * (not the caller's: a caller that leaves mid-commit must not leave the outcome to chance), then
   * the connection goes back. Throws what the statement threw; the session ends either way.
   */
  private async closeInTurn(s: Session, reason: EndReason, message: string, sql: "commit" | "rollback") {
    this.retire(s, reason, message);
    try {
      const result = await this.settle(s, sql);
      // A COMMIT answered ROLLBACK ended the transaction too: counted as what it was.
      this.release(s, sql === "commit" && result.command !== "COMMIT" ? "error" : reason);
      return result;
    } catch (err) {
      this.release(s, reason === "commit" ? "error" : reason);
      throw err;
    }
  }

  /**
   * Ends the session from outside its queue (idle timeout, max lifetime, shutdown, lost connection):
   * the statement running is cancelled and the calls waiting are refused, then it is rolled back and
   * its connection released. Resolves once released.
   */
  private abandon(s: Session, reason: EndReason, message: string): Promise<void> {
    if (this.retire(s, reason, message)) {
      s.ending.abort(new ConnectError(message, Code.Aborted));
      void s.tail.then(async () => {
        try {
          // At shutdown the connection is closed instead (release below): Postgres rolls back, and a
          // hung node cannot hold the shutdown for a ROLLBACK's settle timeout.
          if (!s.lost && reason !== "shutdown" && s.conn.transactionStatus !== "I") await this.settle(s, "rollback");
        } catch {
          // Unreachable or gone: the connection is closed below, and Postgres rolls back with it.
        } finally {
          this.release(s, reason);
        }
      });
    }
    return s.done;
  }

  private settle(s: Session, sql: "commit" | "rollback") {
    return executeOnReserved(s.conn, {
      shard: s.shard, sql, params: [], signal: AbortSignal.timeout(this.deps.settleTimeoutMs), budget: newBudget(1, 1024),
    });
  }

  /**
   * The one place a session's connection goes back (exactly once): to the pool when it is clean, or
   * closed (contained statements, still in a transaction, cancelled): then Postgres rolls back.
   */
  private release(s: Session, reason: EndReason): void {
    if (s.state === "closed") return;
    s.state = "closed";
    s.conn.release({ close: s.contained || s.conn.transactionStatus !== "I" });
    this.live.delete(s);
    this.perNode.set(s.node, (this.perNode.get(s.node) ?? 1) - 1);
    s.markDone();
    try {
      this.deps.observer?.ended({ shard: s.shard, node: s.node.name, reason, ageMs: Date.now() - s.startedAt, identity: s.owner || undefined });
    } catch {
      // metrics and logs are best effort
    }
  }
}

function ownerOf(caller: Caller | undefined): string {
  return caller?.identity ?? "";
}

function beginSql(opts: BeginOptions): string {
  const modes: string[] = [];
  switch (opts.isolation) {
    case IsolationLevel.REPEATABLE_READ: modes.push("isolation level repeatable read"); break;
    case IsolationLevel.SERIALIZABLE: modes.push("isolation level serializable"); break;
    case IsolationLevel.READ_COMMITTED: case IsolationLevel.UNSPECIFIED: break;
    default: throw new ConnectError(`isolation_level ${opts.isolation as number} is not one of IsolationLevel's values`, Code.InvalidArgument);
  }
  if (opts.readOnly) modes.push("read only");
  return modes.length ? `begin ${modes.join(", ")}` : "begin";
}

/** Resolves when `turn` has settled; rejects at once if `signal` aborts first. */
function waitTurn(turn: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(abortError(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    void turn.then(() => {
      signal.removeEventListener("abort", onAbort);
      if (signal.aborted) reject(abortError(signal));
      else resolve();
    });
  });
}
