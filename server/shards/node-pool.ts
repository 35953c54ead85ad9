// One PostgreSQL node (a shard's primary or a replica): a long-lived postgres.js pool behind our own
// admission control, plus the little the router remembers about the node (last outcome, type names).
import { CircuitBreakerPolicy, ConsecutiveBreaker, circuitBreaker, handleType } from "cockatiel";
import postgres from "postgres";
import { Admission, abortError } from "./admission.js";
import { decodedOids } from "../execution/pg-types.js";
import { NodeUnreachableError } from "./node-unreachable.js";
import { type NodeHealth, type NodeStatus, initialHealth } from "./node-health.js";

export interface NodeConfig {
  name: string;
  host: string;
  port: number;
  database: string;
  user: string;
  password?: string;
  role: "primary" | "replica";
}

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

export interface BreakerOptions { failureThreshold: number; halfOpenAfterMs: number }

export interface RawParam { text: string | null; oid: number }
export interface RawColumn { name: string; type: number }
export interface RawResult { command: string; count: number; columns: RawColumn[] }

/** Everything a running statement can be told to do. */
/**
 * Everything a running statement can be told to do. `cancel` resolves once Postgres has the cancel
 * request: it names the backend, not the statement, so until then the connection must not carry
 * another caller's statement (a late request would cancel that one instead).
 */
export interface RunningStatement { done: Promise<RawResult>; cancel(): Promise<void> }

// postgres.js parses some types itself (int4 → number, timestamptz → Date, ...), losing precision.
// Hand every type the router decodes over as its untouched text, and send parameters as given.
const passThrough = { to: 25, from: decodedOids, serialize: (x: unknown) => x, parse: (x: string) => x };

export type RowSink = (cells: unknown[], columns: RawColumn[]) => void;

/** A connection reserved for one transaction. */
export interface ReservedConnection {
  readonly node: NodePool;
  start(text: string, params: RawParam[], onRow: RowSink): RunningStatement;
  /**
   * Returns the connection to the pool (it must not be inside a transaction any more), or, for an
   * isolated one, closes it.
   */
  release(): void;
}

/** A statement on a connection of its own; `closed` settles when that connection is gone. */
export interface IsolatedStatement extends RunningStatement { closed: Promise<void> }

/** Runs one statement on a pool or a reserved connection, streaming rows to onRow. */
function startOn(
  sql: postgres.Sql, text: string, params: RawParam[], onRow: RowSink, prepare: boolean,
  onexecute?: (connection: { onclose?: (() => void) | null }) => boolean,
): RunningStatement {
  const args = params.map((p) => sql.typed(p.text as never, p.oid));
  const query = sql.unsafe(text, args as never[], { prepare, ...(onexecute ? { onexecute } : {}) } as never).values();
  const done = query.forEach((row, result) => onRow(row as unknown[], (result as never as { statement: { columns: RawColumn[] } }).statement.columns))
    .then((result) => {
      const r = result as unknown as { command: string; count: number | null; statement?: { columns: RawColumn[] } };
      return { command: r.command ?? "", count: r.count ?? 0, columns: r.statement?.columns ?? [] };
    });
  return { done, cancel: () => Promise.resolve(query.cancel()).then(() => undefined, () => undefined) };
}

/** A statement refused because its reserved connection is gone: reads as a lost connection. */
function closedStatement(address: string): RunningStatement {
  const err = Object.assign(new Error(`write CONNECTION_CLOSED ${address}`), { code: "CONNECTION_CLOSED" });
  return { done: Promise.reject(err), cancel: () => Promise.resolve() };
}

export class NodePool {
  readonly name: string;
  readonly address: string;
  /** The configured role; the node's own view is in `health` (see NodeHealth). */
  readonly role: NodeConfig["role"];
  readonly admission: Admission;
  readonly health: NodeHealth;
  /** Opens after consecutive connection failures or failed health checks; fails calls fast while open. */
  readonly breaker: CircuitBreakerPolicy;
  /** How long an abandoned (deadline-cancelled) statement may keep its admission slot. */
  readonly abandonAfterMs: number;
  /** Slots for connections opened for one statement or transaction and closed after it (see isolated()). */
  readonly isolation: Admission;
  private sql: postgres.Sql;
  /** Settles when the current generation of connections (`sql`) is retired by setEpoch. */
  private retired: Promise<void>;
  private retire: () => void = () => {};
  private connectOptions: postgres.Options<Record<string, postgres.PostgresType>>;
  /** The shard map version this pool's connections carry (see resharding/epoch-guard.ts). */
  private epoch = 0;
  /** Earlier generations of connections, closing once their statements are done. */
  private readonly retiring = new Set<Promise<void>>();
  /** A connection of its own for health checks, so a saturated pool does not look like a dead node. */
  readonly probe: postgres.Sql;
  private readonly prepared = new Set<string>();
  private readonly typeNames = new Map<number, string>();

  constructor(config: NodeConfig, private readonly options: PoolOptions, breaker: BreakerOptions = { failureThreshold: 5, halfOpenAfterMs: 5000 }) {
    this.name = config.name;
    this.address = `${config.host}:${config.port}`;
    this.role = config.role;
    this.health = initialHealth(config.role);
    this.abandonAfterMs = 2 * options.connectTimeoutMs;
    this.admission = new Admission(options.max, options.maxWaiting, `node ${config.name} (${this.address})`);
    this.isolation = new Admission(options.maxIsolated, options.maxWaiting, `node ${config.name} (${this.address}), isolated statements,`);
    this.breaker = circuitBreaker(handleType(NodeUnreachableError), {
      halfOpenAfter: breaker.halfOpenAfterMs,
      breaker: new ConsecutiveBreaker(breaker.failureThreshold),
    });
    this.probe = postgres({
      host: config.host, port: config.port, database: config.database, user: config.user, password: config.password,
      max: 1, idle_timeout: 0, connect_timeout: Math.max(1, options.connectTimeoutMs / 1000), fetch_types: false,
      onnotice: () => {}, connection: { application_name: "shardrouter-health" } as never,
    });
    this.connectOptions = {
      host: config.host,
      port: config.port,
      database: config.database,
      user: config.user,
      password: config.password,
      idle_timeout: options.idleTimeoutMs / 1000,
      connect_timeout: options.connectTimeoutMs / 1000,
      // No array parsers: the router reads array text itself (see execution/array-literal.ts), and
      // a new connection needs no extra round trip to fetch array types.
      fetch_types: false,
      types: { passThrough } as never,
      onnotice: () => {},
      connection: {
        application_name: "shardrouter",
        TimeZone: "UTC",
        DateStyle: "ISO, MDY",
        bytea_output: "hex",
        statement_timeout: String(options.statementTimeoutMs),
        "shardrouter.epoch": "0",
      } as never,
    };
    this.sql = postgres({ ...this.connectOptions, max: options.max });
    this.retired = new Promise((resolve) => { this.retire = resolve; });
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
    const connection = { ...(this.connectOptions.connection as Record<string, string>), "shardrouter.epoch": String(version) };
    this.connectOptions = { ...this.connectOptions, connection: connection as never };
    const old = this.sql;
    this.retire();
    this.sql = postgres({ ...this.connectOptions, max: this.options.max });
    this.retired = new Promise((resolve) => { this.retire = resolve; });
    const grace = (this.options.statementTimeoutMs || 30_000) / 1000 + this.options.connectTimeoutMs / 1000;
    const ending: Promise<void> = old.end({ timeout: grace }).catch(() => {}).finally(() => this.retiring.delete(ending));
    this.retiring.add(ending);
  }

  /**
   * Starts one statement (the caller holds an admission slot). Rows are handed to onRow as they
   * arrive, as arrays of text cells (arrays already split), so nothing is buffered here.
   */
  start(text: string, params: RawParam[], onRow: RowSink): RunningStatement {
    const prepare = this.prepared.has(text) || (this.prepared.size < this.options.maxPreparedStatements && !!this.prepared.add(text));
    return startOn(this.sql, text, params, onRow, prepare);
  }

  /**
   * One connection of its own for a transaction, holding one admission slot until released.
   * Callers reserving on several nodes must do so in one global order (shard name), or two
   * transactions could each hold a slot the other waits for.
   */
  async reserve(signal: AbortSignal, opts: { isolated?: boolean } = {}): Promise<ReservedConnection> {
    const slots = opts.isolated ? this.isolation : this.admission;
    const waiting = slots.acquire(signal);
    if (waiting) await waiting;
    // An isolated transaction (see startIsolated) gets a connection of its own, closed on release.
    const once = opts.isolated ? this.oneShot() : undefined;
    let conn: postgres.ReservedSql;
    try {
      conn = await this.reserveOn(once, signal);
    } catch (err) {
      slots.release();
      void once?.end({ timeout: 0 });
      throw err;
    }
    // postgres.js 3.4.9 does not mark a reserved connection dead when its socket closes: a statement
    // sent afterwards is written to a null socket from a timer and crashes the process, and
    // release() would put the dead connection back among the open ones. So, like its own begin(),
    // we watch the connection's onclose (reached through onexecute) and stop using it once closed.
    let closed = false;
    let watched = false;
    const watch = (connection: { onclose?: (() => void) | null }) => {
      if (!watched) {
        watched = true;
        connection.onclose = () => { closed = true; };
      }
      return true;
    };
    let released = false;
    return {
      node: this,
      start: (text, params, onRow) => {
        if (closed) return closedStatement(this.address);
        return startOn(conn, text, params, onRow, false, watch);
      },
      release: () => {
        if (released) return;
        released = true;
        if (once) {
          // Handed back first: end() waits out its timeout for a connection still reserved.
          if (!closed) conn.release();
          const slot = () => slots.release();
          once.end({ timeout: this.options.connectTimeoutMs / 1000 }).then(slot, slot);
          return;
        }
        if (!closed) conn.release(); // a closed one is already back in the pool's closed queue
        slots.release();
      },
    };
  }

  /**
   * A connection from postgres.js' reserve(), which takes no signal and, asked of a generation that
   * setEpoch retires meanwhile, can wait until that generation is destroyed (about statementTimeoutMs
   * later): a Transfer at a resharding cutover hung on it for its whole deadline. So it waits for the
   * connection, for the generation to be retired (then it asks the current one), or for the caller's
   * signal, whichever comes first; a connection that arrives after it stopped waiting goes back.
   */
  private async reserveOn(once: postgres.Sql | undefined, signal: AbortSignal): Promise<postgres.ReservedSql> {
    for (;;) {
      if (signal.aborted) throw abortError(signal);
      const retired = once ? undefined : this.retired;
      const pending = (once ?? this.sql).reserve();
      let onAbort: (() => void) | undefined;
      const outcome = await Promise.race([
        pending.then((conn) => ({ conn })),
        ...(retired ? [retired.then(() => ({ retired: true as const }))] : []),
        new Promise<{ aborted: true }>((resolve) => {
          onAbort = () => resolve({ aborted: true });
          signal.addEventListener("abort", onAbort, { once: true });
        }),
      ]).finally(() => signal.removeEventListener("abort", onAbort!));
      if ("conn" in outcome) return outcome.conn;
      pending.then((late) => late.release(), () => {});
      if ("aborted" in outcome) throw abortError(signal);
    }
  }

  /**
   * A statement whose effects on its session nobody can read off its text (a DO block, a CALL, a
   * function that is not built in) runs on a connection opened for it and closed after it, so
   * whatever it set, locked, listened to or created dies with that session. The caller holds an
   * isolation slot and gives it back when `closed` settles. Closing waits for the statement; after a
   * cancel (the caller's deadline) it waits at most connectTimeoutMs for the statement to end, then
   * drops the socket: a connection nobody will use again needs no answer, so its slot never hangs.
   */
  startIsolated(text: string, params: RawParam[], onRow: RowSink): IsolatedStatement {
    const once = this.oneShot();
    const running = startOn(once, text, params, onRow, false);
    let gone!: () => void;
    const closed = new Promise<void>((resolve) => { gone = resolve; });
    let ending = false;
    const end = () => {
      if (ending) return;
      ending = true;
      once.end({ timeout: this.options.connectTimeoutMs / 1000 }).then(gone, gone);
    };
    running.done.then(end, end);
    return { done: running.done, closed, cancel: () => { const sent = running.cancel(); end(); return sent; } };
  }

  /** A client of one connection, with the pool's settings, for one isolated statement or transaction. */
  private oneShot(): postgres.Sql {
    return postgres({ ...this.connectOptions, max: 1, idle_timeout: 0 });
  }

  /** Names for type OIDs the router does not know by heart (enums, domains, extensions), cached. */
  async typeNamesFor(oids: number[]): Promise<Map<number, string>> {
    const missing = oids.filter((o) => !this.typeNames.has(o));
    if (missing.length) {
      const rows = await this.sql.unsafe("select oid::int8 as oid, format_type(oid, null) as name from pg_type where oid = any($1::oid[])", [`{${missing.join(",")}}`]);
      for (const r of rows) this.typeNames.set(Number(r.oid), String(r.name));
      for (const o of missing) if (!this.typeNames.has(o)) this.typeNames.set(o, `oid:${o}`);
    }
    return this.typeNames;
  }

  get status(): NodeStatus {
    return this.health.status;
  }

  set status(status: NodeStatus) {
    this.health.status = status;
  }

  async close(): Promise<void> {
    await Promise.all([this.sql.end({ timeout: 5 }), this.probe.end({ timeout: 1 }), ...this.retiring]);
  }
}
