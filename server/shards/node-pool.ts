// One PostgreSQL node (a shard's primary or a replica): long-lived connections (connection-pool.ts)
// behind our own admission control, plus the little the router remembers about the node (last
// outcome, type names). Health checks and type lookups use a postgres.js connection of their own.
import { CircuitBreakerPolicy, ConsecutiveBreaker, circuitBreaker, handleType } from "cockatiel";
import postgres from "postgres";
import { type PostgresTls, postgresSsl } from "../config/postgres-tls.js";
import { Admission, abortError } from "./admission.js";
import { ConnectionPool } from "./connection-pool.js";
import { NodeUnreachableError } from "./node-unreachable.js";
import { type ConnectOptions, PgConnection } from "./pg-connection.js";
import { type NodeHealth, type NodeStatus, initialHealth } from "./node-health.js";

export interface NodeConfig {
  name: string;
  host: string;
  port: number;
  database: string;
  user: string;
  password?: string;
  /** Verified TLS for every connection to the node, whichever login it carries. */
  ssl?: PostgresTls;
  role: "primary" | "replica";
}

/** A Postgres login: the router's own (the node's configured user), or a caller identity's (auth). */
export interface Login { user: string; password?: string }

/** The login for a shard's nodes; undefined means the router's own. */
export type LoginFor = (shard: string) => Login | undefined;

export interface PoolOptions {
  max: number;
  maxWaiting: number;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  statementTimeoutMs: number;
  /** Distinct statement texts kept as named prepared statements per node; others run unnamed. */
  maxPreparedStatements: number;
  /** Connections of their own (closed after one statement or transaction) open at once per node. */
  maxIsolated: number;
}

export type { NodeStatus } from "./node-health.js";

let preparedCount = 0;

/** Pools are per login and password: a changed password is another pool. */
function loginKey(login: Login): string {
  return `${login.user}\u0000${login.password ?? ""}`;
}

/** A statement whose caller gave up while it waited for its connection: it never reached Postgres. */
function cancelledBeforeSent(): Error {
  return Object.assign(new Error("statement cancelled before it was sent"), { code: "CANCELLED" });
}

/** Postgres refused a prepared statement whose plan or result columns changed under it (ALTER TABLE). */
function isStalePlan(err: unknown): boolean {
  const routine = (err as { routine?: string }).routine;
  return routine === "RevalidateCachedQuery" || routine === "FetchPreparedStatement";
}

export interface BreakerOptions { failureThreshold: number; halfOpenAfterMs: number }

export interface RawParam { text: string | null; oid: number }
export interface RawColumn { name: string; type: number }
export interface RawResult { command: string; count: number; columns: RawColumn[] }

/**
 * Everything a running statement can be told to do. `cancel` resolves once Postgres has the cancel
 * request: it names the backend, not the statement, so until then the connection must not carry
 * another caller's statement (a late request would cancel that one instead).
 */
export interface RunningStatement { done: Promise<RawResult>; cancel(): Promise<void> }

export type RowSink = (cells: unknown[], columns: RawColumn[]) => void;

/** A connection reserved for one transaction. */
export interface ReservedConnection {
  readonly node: NodePool;
  /**
   * Sends the statement at once: statements started in one tick go out in one write (pipelined).
   * It runs as the node's prepared statement for its text, unless `once` (a text used once).
   */
  start(text: string, params: RawParam[], onRow: RowSink, opts?: { once?: boolean }): RunningStatement;
  /**
   * Returns the connection to the pool, or closes it when it is not clean (still in a transaction,
   * cancelled, or isolated) or `close` asks (it ran a statement the guard contains): Postgres then
   * rolls back whatever was left open. Only the first call counts.
   */
  release(opts?: { close?: boolean }): void;
  /**
   * Calls `listener` if the connection closes while it is still reserved (the node went away, the
   * backend was terminated): Postgres has rolled back what was open on it. Taken off at release.
   */
  onLost(listener: () => void): void;
  /** 'I' idle, 'T' in a transaction, 'E' in a failed transaction (from Postgres' last ReadyForQuery). */
  readonly transactionStatus: string;
}

/** A statement on a connection of its own; `closed` settles when that connection is gone. */
export interface IsolatedStatement extends RunningStatement { closed: Promise<void> }

export class NodePool {
  readonly name: string;
  readonly address: string;
  /** The router's own login on this node. */
  readonly user: string;
  /** The configured role; the node's own view is in `health` (see NodeHealth). */
  readonly role: NodeConfig["role"];
  readonly admission: Admission;
  readonly health: NodeHealth;
  /** Opens after consecutive connection failures or failed health checks; fails calls fast while open. */
  readonly breaker: CircuitBreakerPolicy;
  /** Slots for connections opened for one statement or transaction and closed after it (see isolated()). */
  readonly isolation: Admission;
  /** The current generation of connections as the router's own login (a new one at each shard map version, see setEpoch). */
  private pool: ConnectionPool;
  /** The current generation for each caller login (auth: one pool per role and node), by loginKey. */
  private loginPools = new Map<string, ConnectionPool>();
  private connectOptions: ConnectOptions;
  /** The shard map version this pool's connections carry (see resharding/epoch-guard.ts). */
  private epoch = 0;
  /** Earlier generations of connections, closing once their statements are done. */
  private readonly retiring = new Set<Promise<void>>();
  /** A connection of its own for health checks, so a saturated pool does not look like a dead node. */
  readonly probe: postgres.Sql;
  /** Statement text → the name it is prepared under on every connection of this node (bounded). */
  private readonly prepared = new Map<string, string>();
  private readonly typeNames = new Map<number, string>();

  constructor(config: NodeConfig, private readonly options: PoolOptions, breaker: BreakerOptions = { failureThreshold: 5, halfOpenAfterMs: 5000 }) {
    this.name = config.name;
    this.address = `${config.host}:${config.port}`;
    this.user = config.user;
    this.role = config.role;
    this.health = initialHealth(config.role);
    this.admission = new Admission(options.max, options.maxWaiting, `node ${config.name} (${this.address})`);
    this.isolation = new Admission(options.maxIsolated, options.maxWaiting, `node ${config.name} (${this.address}), isolated statements,`);
    this.breaker = circuitBreaker(handleType(NodeUnreachableError), {
      halfOpenAfter: breaker.halfOpenAfterMs,
      breaker: new ConsecutiveBreaker(breaker.failureThreshold),
    });
    this.probe = postgres({
      host: config.host, port: config.port, database: config.database, user: config.user, password: config.password,
      ssl: postgresSsl(config.ssl, config.host),
      max: 1, idle_timeout: 0, connect_timeout: Math.max(1, options.connectTimeoutMs / 1000), fetch_types: false,
      onnotice: () => {}, connection: { application_name: "shardrouter-health" } as never,
    });
    this.connectOptions = {
      host: config.host,
      port: config.port,
      database: config.database,
      user: config.user,
      password: config.password,
      ssl: postgresSsl(config.ssl, config.host),
      connectTimeoutMs: options.connectTimeoutMs,
      parameters: {
        application_name: "shardrouter",
        TimeZone: "UTC",
        DateStyle: "ISO, MDY",
        bytea_output: "hex",
        statement_timeout: String(options.statementTimeoutMs),
        "shardrouter.epoch": "0",
      },
    };
    this.pool = new ConnectionPool(this.connectOptions, options.idleTimeoutMs);
  }

  /**
   * Connections from now on carry shard map `version`: a source fenced at a cutover refuses writes
   * from connections of an older one. A setting of the session's startup survives DISCARD and RESET,
   * so no caller's statement can drop it. Opens a new generation of connections; the old one closes
   * once the statements and transactions on it are done (they were admitted under the old map).
   */
  setEpoch(version: number): void {
    if (version === this.epoch) return;
    this.epoch = version;
    this.connectOptions = { ...this.connectOptions, parameters: { ...this.connectOptions.parameters, "shardrouter.epoch": String(version) } };
    const old = [this.pool, ...this.loginPools.values()];
    this.pool = new ConnectionPool(this.connectOptions, this.options.idleTimeoutMs);
    this.loginPools = new Map();
    for (const pool of old) this.retirePool(pool);
  }

  /** Closes a pool once its statements are done (or after their deadline and a grace), tracked for close(). */
  private retirePool(pool: ConnectionPool): void {
    const grace = (this.options.statementTimeoutMs || 30_000) + this.options.connectTimeoutMs;
    const ending: Promise<void> = pool.retire(grace).finally(() => this.retiring.delete(ending));
    this.retiring.add(ending);
  }

  /**
   * Closes the pools of logins no identity uses any more (an auth reload revoked it, or changed its
   * password): idle connections now, busy ones when their statements are done.
   */
  keepLogins(logins: readonly Login[]): void {
    const keep = new Set(logins.map(loginKey));
    for (const [key, pool] of this.loginPools) {
      if (keep.has(key)) continue;
      this.loginPools.delete(key);
      this.retirePool(pool);
    }
  }

  /** The pool of `login` (undefined: the router's own), opened on first use. */
  private poolFor(login: Login | undefined): ConnectionPool {
    if (!login) return this.pool;
    const key = loginKey(login);
    let pool = this.loginPools.get(key);
    if (!pool) this.loginPools.set(key, (pool = new ConnectionPool(this.optionsFor(login), this.options.idleTimeoutMs)));
    return pool;
  }

  private optionsFor(login: Login | undefined): ConnectOptions {
    return login ? { ...this.connectOptions, user: login.user, password: login.password } : this.connectOptions;
  }

  /** Connections open to the node now, every generation (for tests). */
  get openConnections(): number {
    let open = this.pool.size;
    for (const pool of this.loginPools.values()) open += pool.size;
    return open;
  }

  /**
   * Starts one statement (the caller holds an admission slot) on an idle connection, or a new one.
   * Rows are handed to onRow as they arrive, as arrays of text cells, so nothing is buffered here.
   */
  start(text: string, params: RawParam[], onRow: RowSink, login?: Login): RunningStatement {
    const pool = this.poolFor(login);
    let conn: PgConnection | undefined;
    let cancelled = false;
    let cancelling: Promise<void> | undefined;
    const done = (async () => {
      conn = await pool.acquire();
      if (cancelled) {
        pool.release(conn);
        throw cancelledBeforeSent();
      }
      try {
        return await this.runPrepared(conn, text, params, onRow);
      } finally {
        // After a cancel the connection is closed, not reused: wait until the request is out.
        if (cancelling) void cancelling.then(() => pool.release(conn!));
        else pool.release(conn);
      }
    })();
    return {
      done,
      cancel: () => {
        cancelled = true;
        if (!conn) return Promise.resolve();
        return (cancelling ??= this.cancelOn(conn, done));
      },
    };
  }

  /** Runs under the statement's prepared name, preparing it first on this connection if need be. */
  private async runPrepared(conn: PgConnection, text: string, params: RawParam[], onRow: RowSink): Promise<RawResult> {
    const name = this.preparedName(text);
    try {
      return await conn.run(text, params, onRow, name).done;
    } catch (err) {
      // The statement's result columns or plan changed under it (ALTER TABLE): prepare it anew, once.
      if (!name || conn.transactionStatus !== "I" || !isStalePlan(err)) throw err;
      this.forget(text, name);
      return await conn.run(text, params, onRow, this.preparedName(text)).done;
    }
  }

  private forget(text: string, name: string): void {
    if (this.prepared.get(text) === name) this.prepared.delete(text);
  }

  private preparedName(text: string): string | undefined {
    let name = this.prepared.get(text);
    if (name === undefined && this.prepared.size < this.options.maxPreparedStatements) {
      name = `sr${preparedCount++}`;
      this.prepared.set(text, name);
    }
    return name;
  }

  /**
   * Cancels what `conn` runs. A statement that still does not end (the node is paused, or its
   * answer was lost) is ended by closing its connection once connectTimeoutMs has passed, so every
   * statement settles within its deadline plus that grace, and its slot is given back only then.
   */
  private cancelOn(conn: PgConnection, done: Promise<unknown>): Promise<void> {
    const delivered = conn.cancel();
    const force = setTimeout(() => conn.destroy(), this.options.connectTimeoutMs);
    force.unref();
    done.then(() => clearTimeout(force), () => clearTimeout(force));
    return delivered;
  }

  /**
   * One connection of its own for a transaction, holding one admission slot until released.
   * Callers reserving on several nodes must do so in one global order (shard name), or two
   * transactions could each hold a slot the other waits for.
   */
  async reserve(signal: AbortSignal, opts: { isolated?: boolean; login?: Login } = {}): Promise<ReservedConnection> {
    const slots = opts.isolated ? this.isolation : this.admission;
    const waiting = slots.acquire(signal);
    if (waiting) await waiting;
    const pool = this.poolFor(opts.login);
    let conn: PgConnection;
    try {
      if (signal.aborted) throw abortError(signal);
      // An isolated transaction (see startIsolated) gets a connection of its own, closed on release.
      conn = opts.isolated ? await PgConnection.open(this.optionsFor(opts.login), signal) : await pool.acquire(signal);
    } catch (err) {
      slots.release();
      throw err;
    }
    let released = false;
    const cancels: Promise<void>[] = [];
    const lostListeners: (() => void)[] = [];
    return {
      node: this,
      start: (text, params, onRow, { once = false } = {}) => {
        const name = once ? undefined : this.preparedName(text);
        const { done } = conn.run(text, params, onRow, name);
        // Its plan went stale (ALTER TABLE): the next transaction prepares the text anew, under a new name.
        if (name) done.catch((err) => { if (isStalePlan(err)) this.forget(text, name); });
        return { done, cancel: () => { const sent = this.cancelOn(conn, done); cancels.push(sent); return sent; } };
      },
      get transactionStatus() { return conn.transactionStatus; },
      onLost: (listener) => { if (!released) lostListeners.push(conn.onClose(listener)); },
      release: ({ close = false } = {}) => {
        if (released) return;
        released = true;
        for (const off of lostListeners.splice(0)) off();
        const slot = () => slots.release();
        if (opts.isolated || close) {
          // The slot comes back once the connection is gone, so a node never has more open than slots.
          const end = () => { conn.end(); conn.closed.then(slot); };
          if (cancels.length) Promise.all(cancels).then(end);
          else end();
          return;
        }
        if (!cancels.length) return void (pool.release(conn), slot());
        // A connection with a cancel on its way is closed once the request is out (see start()).
        Promise.all(cancels).then(() => { pool.release(conn); slot(); });
      },
    };
  }

  /**
   * A statement whose effects on its session nobody can read off its text (a DO block, a CALL, a
   * function that is not built in) runs on a connection opened for it and closed after it, so
   * whatever it set, locked, listened to or created dies with that session. The caller holds an
   * isolation slot and gives it back when `closed` settles. A cancelled statement that does not end
   * within connectTimeoutMs has its connection closed under it, so its slot never hangs.
   */
  startIsolated(text: string, params: RawParam[], onRow: RowSink, login?: Login): IsolatedStatement {
    let conn: PgConnection | undefined;
    let cancelled = false;
    const done = (async () => {
      conn = await PgConnection.open(this.optionsFor(login));
      if (cancelled) throw cancelledBeforeSent();
      return await conn.run(text, params, onRow).done;
    })();
    const closed = done.then(() => undefined, () => undefined).then(() => {
      if (!conn) return;
      conn.end();
      return conn.closed;
    });
    return {
      done, closed,
      cancel: () => {
        cancelled = true;
        return conn ? this.cancelOn(conn, done) : Promise.resolve();
      },
    };
  }

  /** Names for type OIDs the router does not know by heart (enums, domains, extensions), cached. */
  async typeNamesFor(oids: number[]): Promise<Map<number, string>> {
    const missing = oids.filter((o) => !this.typeNames.has(o));
    if (!missing.length) return this.typeNames;
    const rows = await this.probe.unsafe("select oid::int8 as oid, format_type(oid, null) as name from pg_type where oid = any($1::oid[])", [`{${missing.join(",")}}`]);
    for (const r of rows) this.typeNames.set(Number(r.oid), String(r.name));
    // A type the probe cannot see yet (created by a transaction still open) is named by its OID for
    // now, but not remembered so: once committed, it is looked up again.
    return new Map(oids.map((o) => [o, this.typeNames.get(o) ?? `oid:${o}`]));
  }

  get status(): NodeStatus {
    return this.health.status;
  }

  set status(status: NodeStatus) {
    this.health.status = status;
  }

  async close(): Promise<void> {
    await Promise.all([this.pool.retire(5000), ...[...this.loginPools.values()].map((p) => p.retire(5000)), this.probe.end({ timeout: 1 }), ...this.retiring]);
  }
}
