// One connection to a PostgreSQL node, for the router's own statements (pooled, reserved for a
// transaction, or isolated). It is node-postgres' Client in pipeline mode, which we chose over
// postgres.js for this path: statements written back to back go out in one write and are answered in
// order; when the socket closes, every statement queued or sent on it is rejected (postgres.js 3.4.9
// left those queued on a reserved connection unsettled for good, which is what hung the bank test);
// and it sends a parameter's type OID in Parse instead of a describe round trip first. What we add:
// text cells streamed to the caller as they arrive, named prepared statements chosen by the pool, a
// cancel that says when Postgres has it, and destroy(), which settles everything at once.
//
// A statement ends in one of two ways: Postgres answers, or the connection is gone. So "every
// statement settles" reduces to "a connection nobody can wait for any longer is destroyed", which the
// pool does after a cancel that gets no answer within connectTimeoutMs (a paused node).
import net from "node:net";
import tls from "node:tls";
import pg from "pg";
import { serialize } from "pg-protocol";
import { tlsFailure } from "../config/postgres-tls.js";
import type { RawColumn, RawParam, RawResult, RowSink } from "./node-pool.js";

export interface ConnectOptions {
  host: string;
  port: number;
  database: string;
  user: string;
  password?: string;
  /** Verified TLS (config/postgres-tls.ts), or none: statements and cancel requests alike. */
  ssl: tls.ConnectionOptions | false;
  connectTimeoutMs: number;
  /** Startup parameters: session defaults that DISCARD ALL and RESET keep (see resharding/epoch-guard.ts). */
  parameters: Record<string, string>;
}

/** A statement on its way: `done` settles when Postgres answers or the connection goes. */
export interface PgStatement { done: Promise<RawResult> }

/** What node-postgres does not declare: the members its Query protocol hooks use. */
interface WireConnection {
  parsedStatements: Record<string, string>;
  submittedNamedStatements: Record<string, string>;
  parse(msg: { text: string; name?: string; types?: number[] }): void;
  bind(msg: { portal?: string; statement?: string; values?: (string | null)[] }): void;
  describe(msg: { type: "P" | "S"; name?: string }): void;
  execute(msg: { portal?: string }): void;
  sync(): void;
  stream: net.Socket;
}
interface DatabaseError extends Error {
  code?: string; detail?: string; hint?: string; constraint?: string; table?: string; column?: string; routine?: string;
}

/** The shape execution/postgres-errors.ts maps to Connect codes (postgres.js' names, used across the router). */
function normalizeError(err: unknown): Error {
  const e = err as DatabaseError;
  if (e && typeof e.code === "string" && e.code.length === 5 && "severity" in e) {
    return Object.assign(new Error(e.message), {
      name: "PostgresError", code: e.code, detail: e.detail, hint: e.hint, routine: e.routine,
      constraint_name: e.constraint, table_name: e.table, column_name: e.column,
    });
  }
  if (e && typeof e.code === "string" && /^E[A-Z]+$/.test(e.code)) return e; // a socket error: ECONNREFUSED, ECONNRESET, ...
  if (tlsFailure(e)) return e; // the certificate refused, or no TLS on the server: said as such (postgres-errors.ts)
  const message = e?.message ?? String(err);
  const code = /timeout/i.test(message) ? "CONNECT_TIMEOUT" : "CONNECTION_CLOSED";
  return Object.assign(new Error(`${code.toLowerCase().replace(/_/g, " ")}: ${message}`), { code });
}

/** "INSERT 0 1" → INSERT, 1; "PREPARE TRANSACTION" → PREPARE TRANSACTION, 0 (postgres.js' reading). */
function commandTag(tag: string): { command: string; count: number } {
  const words = tag.split(" ");
  const count = words.length > 1 && /^\d+$/.test(words[words.length - 1]) ? Number(words[words.length - 1]) : 0;
  while (words.length > 1 && /^\d+$/.test(words[words.length - 1])) words.pop();
  return { command: words.join(" "), count };
}

/** One statement in node-postgres' pipeline: Parse (unless prepared), Bind, Describe, Execute, Sync. */
class Statement extends (pg.Query as unknown as new (config: object) => object) {
  private columns: RawColumn[] = [];
  private command = "";
  private count = 0;
  private failed: unknown;

  constructor(
    private readonly sql: string,
    private readonly params: RawParam[],
    readonly name: string | undefined,
    private readonly onRow: RowSink,
    private readonly settle: (err: unknown, result?: RawResult) => void,
  ) {
    super({ text: sql, name, queryMode: "extended" });
  }

  requiresPreparation(): boolean {
    return true;
  }

  /** Overrides node-postgres' own: parameter types from our OIDs, values already text. */
  prepare(connection: WireConnection): void {
    const parsed = this.name && (connection.parsedStatements[this.name] !== undefined || connection.submittedNamedStatements[this.name] !== undefined);
    if (!parsed) {
      connection.parse({ text: this.sql, name: this.name, types: this.params.map((p) => p.oid) });
      if (this.name) connection.submittedNamedStatements[this.name] = this.sql;
    }
    connection.bind({ statement: this.name, values: this.params.map((p) => p.text) });
    connection.describe({ type: "P" });
    connection.execute({});
    connection.sync();
  }

  handleRowDescription(msg: { fields: { name: string; dataTypeID: number }[] }): void {
    this.columns = msg.fields.map((f) => ({ name: f.name, type: f.dataTypeID }));
  }

  handleDataRow(msg: { fields: (string | null)[] }): void {
    if (this.failed) return;
    try {
      this.onRow(msg.fields, this.columns);
    } catch (err) {
      this.failed = err; // reported once Postgres is done with the statement
    }
  }

  handleCommandComplete(msg: { text: string }): void {
    ({ command: this.command, count: this.count } = commandTag(msg.text));
  }

  handleEmptyQuery(): void {}

  handleError(err: unknown): void {
    this.settle(this.failed ?? normalizeError(err));
  }

  handleReadyForQuery(): void {
    if (this.failed) this.settle(this.failed);
    else this.settle(undefined, { command: this.command, count: this.count, columns: this.columns });
  }

  handleCopyInResponse(connection: { sendCopyFail(msg: string): void }): void {
    connection.sendCopyFail("COPY FROM STDIN is not supported through the router");
  }

  handleCopyData(): void {}
}

/** node-postgres passes only the startup parameters it knows; ours (TimeZone, the epoch …) go too. */
class RouterClient extends pg.Client {
  constructor(config: pg.ClientConfig, private readonly parameters: Record<string, string>) {
    super(config);
  }

  getStartupConf(): Record<string, string> {
    const base = (pg.Client.prototype as unknown as { getStartupConf(this: pg.Client): Record<string, string> }).getStartupConf.call(this);
    return { ...base, ...this.parameters };
  }
}

export class PgConnection {
  /** Statements sent and not yet settled. */
  private pending = 0;
  private gone = false;
  /** Set once a cancel was sent: a late cancel request could hit the next statement, so it is never reused. */
  cancelled = false;
  /** Settles when the socket is closed, however that happened. */
  readonly closed: Promise<void>;
  /** Told once when the socket closes; each can be taken off again (see onClose). */
  private readonly closeListeners = new Set<() => void>();

  private constructor(private readonly client: RouterClient, private readonly options: ConnectOptions) {
    let onEnd!: () => void;
    this.closed = new Promise((resolve) => { onEnd = resolve; });
    client.on("end", () => {
      this.gone = true;
      onEnd();
      for (const listener of this.closeListeners) listener();
      this.closeListeners.clear();
    });
    client.on("error", () => { this.gone = true; }); // each statement gets the error; a client error event must not crash the process
    this.gatherWrites();
  }

  /** Opens and authenticates a connection; refused, timed out or aborted, it rejects (and leaves nothing open). */
  static async open(options: ConnectOptions, signal?: AbortSignal): Promise<PgConnection> {
    const client = new RouterClient({
      host: options.host, port: options.port, database: options.database, user: options.user,
      password: options.password ?? "", ssl: options.ssl, connectionTimeoutMillis: options.connectTimeoutMs, keepAlive: true, pipeline: true,
    }, options.parameters);
    const conn = new PgConnection(client, options);
    const abort = () => conn.destroy();
    signal?.addEventListener("abort", abort, { once: true });
    try {
      if (signal?.aborted) throw signal.reason;
      await client.connect();
      return conn;
    } catch (err) {
      conn.destroy();
      throw normalizeError(err);
    } finally {
      signal?.removeEventListener("abort", abort);
    }
  }

  /**
   * Calls `listener` once when the socket closes (at once, in a microtask, if it is closed already).
   * Returns what takes it off: a long-lived pooled connection serves many holders, and a listener
   * per holder must not pile up on it (as `.then` on `closed` would).
   */
  onClose(listener: () => void): () => void {
    if (this.gone) {
      queueMicrotask(listener);
      return () => {};
    }
    this.closeListeners.add(listener);
    return () => void this.closeListeners.delete(listener);
  }

  /** True while it can take a statement for a new caller: open, idle, outside a transaction, never cancelled. */
  get reusable(): boolean {
    return !this.gone && !this.cancelled && this.pending === 0 && this.transactionStatus === "I";
  }

  get isClosed(): boolean {
    return this.gone;
  }

  /** 'I' idle, 'T' in a transaction, 'E' in a failed transaction (from the last ReadyForQuery). */
  get transactionStatus(): string {
    return (this.client as unknown as { getTransactionStatus(): string | null }).getTransactionStatus() ?? "I";
  }

  /** Sends a statement now (it goes out with whatever else is written in this tick). */
  run(text: string, params: RawParam[], onRow: RowSink, name?: string): PgStatement {
    this.pending++;
    let settle!: (err: unknown, result?: RawResult) => void;
    const done = new Promise<RawResult>((resolve, reject) => {
      settle = (err, result) => {
        settle = () => {};
        this.pending--;
        if (err) reject(err);
        else resolve(result!);
      };
    });
    if (this.gone) {
      settle(Object.assign(new Error(`connection closed: ${this.options.host}:${this.options.port}`), { code: "CONNECTION_CLOSED" }));
      return { done };
    }
    this.client.query(new Statement(text, params, name, onRow, (err, result) => settle(err, result)) as never);
    return { done };
  }

  /**
   * node-postgres writes each protocol message on its own (a statement is five, flushed as one
   * writev per statement). Every message sent in one tick is gathered and written once, at the end of
   * the tick, so a shard's pipeline is one write (one syscall). Its CPU gain was below this machine's
   * noise in the bench (docs/performance.md, "What each change bought").
   */
  private gatherWrites(): void {
    const con = (this.client as unknown as { connection: WireConnection & { _send(buffer: Buffer): boolean } }).connection;
    const gathered: Buffer[] = [];
    const flush = () => {
      const all = gathered.length === 1 ? gathered[0] : Buffer.concat(gathered);
      gathered.length = 0;
      if (con.stream.writable) con.stream.write(all);
    };
    con._send = (buffer: Buffer) => {
      if (!con.stream.writable) return false;
      if (gathered.push(buffer) === 1) process.nextTick(flush);
      return true;
    };
  }

  /**
   * Asks Postgres to cancel what this connection runs, over a connection of its own. Settles once the
   * postmaster has the request (it closes that connection), or it could not be delivered within
   * connectTimeoutMs. The connection is marked so it is never handed to another caller.
   */
  cancel(): Promise<void> {
    this.cancelled = true;
    const { processID, secretKey } = this.client as unknown as { processID: number | null; secretKey: number | null };
    if (this.gone || processID === null || secretKey === null) return Promise.resolve();
    const { host, port, ssl, connectTimeoutMs } = this.options;
    return new Promise((resolve) => {
      const socket = net.connect(port, host);
      let current: net.Socket = socket;
      const timer = setTimeout(() => current.destroy(), connectTimeoutMs);
      const done = () => { clearTimeout(timer); resolve(); };
      const request = serialize.cancel(processID, secretKey);
      socket.on("error", () => {});
      socket.once("close", done);
      if (!ssl) return void socket.once("connect", () => socket.write(request));
      // Over verified TLS like the connection itself (as libpq 17 does): the cancel key, which lets
      // whoever has it cancel this backend's statements, never crosses in the clear.
      socket.once("connect", () => socket.write(serialize.requestSsl()));
      socket.once("data", (answer) => {
        if (answer[0] !== 0x53) return void socket.destroy(); // not 'S': no TLS there, so no request either
        const secure = tls.connect({ ...ssl, socket });
        current = secure;
        secure.on("error", () => {});
        secure.once("secureConnect", () => secure.write(request));
        secure.once("close", done);
      });
    });
  }

  /** Closes the socket now: every statement still pending on it is rejected (Postgres rolls back an open transaction). */
  destroy(): void {
    this.gone = true;
    const stream = (this.client as unknown as { connection?: WireConnection }).connection?.stream;
    if (stream && !stream.destroyed) stream.destroy();
    else this.client.end().catch(() => {});
  }

  /** Says goodbye (Terminate) once the statements already sent are answered. */
  end(): void {
    if (this.gone) return;
    this.client.end().catch(() => {});
  }
}
