// The hand-written face over the generated RouterService client: keys in, plain JS rows out, every
// failure a ShardRouterError. Parameters are encoded inside each call so an unencodable value
// rejects that call's promise (InvalidArgument) before anything is sent.
import { type CallOptions as ConnectCallOptions, type Client, Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { codeFromString } from "@connectrpc/connect/protocol-connect";
import { type ExecuteResponse, ReadPreference, RouterService } from "./gen/shardrouter/v1/router_pb.ts";
import { IsolationLevel, TransactionOutcome, type TransferResponse } from "./gen/shardrouter/v1/transactions_pb.ts";
import { toShardRouterError } from "./errors.ts";
import { type ExplainResult, explainResultOf } from "./explain.ts";
import { type MergeOptions, mergeSpec } from "./merge-spec.ts";
import { type QueryResult, type Row, type RowMode, decodeResult } from "./results.ts";
import { fromTemplate } from "./sql-template.ts";
import { type DecodeOptions, type SqlParam, encodeParams } from "./values.ts";

/** A shard key: a non-empty string, or an integer (its decimal text is the key). */
export type ShardKey = string | number | bigint;

export interface CallOptions {
  /** This call's deadline, overriding the client's timeoutMs. */
  timeoutMs?: number;
  signal?: AbortSignal;
  headers?: Record<string, string>;
}

export type ReadPreferenceName = "primary" | "primaryPreferred" | "replicaPreferred" | "replica";

export interface QueryOptions extends CallOptions {
  readPreference?: ReadPreferenceName;
  /** Overrides the client's decode options for this call. */
  decode?: DecodeOptions;
  /** "array": each row is its values in column order (`query<[string, bigint]>(…)`); default "object". */
  rowMode?: RowMode;
}

export interface AllOptions extends QueryOptions, MergeOptions {
  /** Return the other shards' rows when some fail; failures are then in `shards[i].error`. */
  allowPartial?: boolean;
}

export interface ExecuteOptions extends QueryOptions {
  /** With a preference that allows replicas: a replica lagging more than this is not used (0 or unset: no bound). */
  maxReplicaLagMs?: number;
  /**
   * An UPDATE or DELETE that pins no shard key runs on every shard (atomically) only with this;
   * without it such a statement is refused (InvalidArgument), so a forgotten WHERE never touches every shard.
   */
  allowScatterWrite?: boolean;
  /**
   * Makes a write safe to retry: a retry with the same id (and the same statement) is answered from
   * the first attempt's record (`replayed: true`) instead of running again. Unset: no retry safety.
   */
  requestId?: string;
}

/**
 * The rows (merged when several shards answered; rowsAffected summed), and the fields of
 * shardrouter.v1.ExecuteResponse: shards (those that ran it, in shard map order), routing (why, as
 * explain() words it), twoPhase and transactionId (a write on several shards, committed together),
 * replayed (the stored answer of an earlier call with the same requestId: nothing ran now), shardMapVersion.
 */
export type ExecuteResult<R = Row> = QueryResult<R> & Omit<ExecuteResponse, "$typeName" | "result">;

export interface NodeInfo { name: string; address: string; role: string; status: string }

export interface RouteInfo {
  shard: string;
  /** murmur3 x86 32-bit (seed 0) of the key's UTF-8 bytes. */
  keyspaceId: number;
  strategy: string;
  nodes: NodeInfo[];
  shardMapVersion: bigint;
}

export interface ShardResult<R = Row> extends QueryResult<R> { shard: string }

export interface ShardOutcome {
  shard: string;
  rowCount: number;
  elapsedMs: number;
  /** Set when this shard failed (only with allowPartial; otherwise the call fails). */
  error?: { code: Code; message: string; sqlstate?: string };
}

export interface AllResult<R = Row> extends QueryResult<R> { shards: ShardOutcome[] }

export type Outcome = "committed" | "unspecified";

export interface TransferOptions extends CallOptions {
  /** Idempotency key: a retry with the same id returns the first outcome. Default: a new random UUID. */
  requestId?: string;
}

/**
 * fromShard, toShard, twoPhase (true when the accounts are on different shards), fromBalance and
 * toBalance right after the transfer, transactionId, replayed (the stored outcome of an earlier attempt
 * with the same requestId): the fields of shardrouter.v1.TransferResponse.
 */
export type TransferResult = Omit<TransferResponse, "$typeName" | "outcome"> & { outcome: Outcome; requestId: string };

export interface TransactionStatement { key: ShardKey; sql: string; params?: readonly SqlParam[] }

export interface TransactionOptions extends TransferOptions { decode?: DecodeOptions }

export interface TransactionResult<R = Row> {
  outcome: Outcome;
  /** One per statement, in request order. */
  results: ShardResult<R>[];
  twoPhase: boolean;
  transactionId: string;
  replayed: boolean;
  /** Shards that took part, in the order their locks were taken. */
  shards: string[];
  requestId: string;
}

export interface ShardTopology {
  name: string;
  /** "up" when its primary answers, "down" otherwise, "unknown" before the first check. */
  status: string;
  /** Its part in the shard map: "active" (owns keys), "receiving" or "draining" (a reshard is moving keys), "retired", or "spare" (owns none). */
  state: string;
  weight: number;
  nodes: NodeInfo[];
  ownership: { description: string; keyspaceFraction: number };
}

export interface Topology {
  strategy: string;
  shardMapVersion: bigint;
  shards: ShardTopology[];
  inDoubtTransactions: number;
}

/** Statements on the shard that owns one key. */
export interface ShardScope {
  readonly key: string;
  query<R = Row>(sql: string, params?: readonly SqlParam[], opts?: QueryOptions): Promise<ShardResult<R>>;
  /**
   * A tagged template: `` scope.sql`select * from accounts where id = ${id}` `` sends `… where id = $1`
   * with `id` as a bound parameter, never as text. For call options, use query().
   */
  sql<R = Row>(strings: TemplateStringsArray, ...values: SqlParam[]): Promise<ShardResult<R>>;
  /**
   * An interactive transaction on this shard: `fn` runs statements on `tx` as it decides; when it
   * resolves the transaction commits, when it throws it rolls back and the error is rethrown. Commit
   * fails with Aborted when Postgres rolled the transaction back (a statement in it failed).
   */
  transaction<T>(fn: (tx: ShardTransaction) => Promise<T>, opts?: BeginOptions): Promise<T>;
  /** Begins an interactive transaction and hands it over: you must commit() or rollback() it. */
  begin(opts?: BeginOptions): Promise<ShardTransaction>;
}

export type IsolationLevelName = "read committed" | "repeatable read" | "serializable";

export interface BeginOptions extends CallOptions {
  /** Postgres' default: "read committed". */
  isolationLevel?: IsolationLevelName;
  /** BEGIN READ ONLY: writes fail with SQLSTATE 25006. */
  readOnly?: boolean;
  /** The router rolls the transaction back when no call on it arrives for this long (capped by its config). */
  idleTimeoutMs?: number;
}

export type TransactionQueryOptions = Omit<QueryOptions, "readPreference">;

/**
 * An interactive transaction: one connection on the shard's primary, held by the router until
 * commit() or rollback() (or its idle timeout). Statements run one at a time, in call order.
 */
export interface ShardTransaction {
  readonly shard: string;
  query<R = Row>(sql: string, params?: readonly SqlParam[], opts?: TransactionQueryOptions): Promise<ShardResult<R>>;
  sql<R = Row>(strings: TemplateStringsArray, ...values: SqlParam[]): Promise<ShardResult<R>>;
  commit(opts?: CallOptions): Promise<void>;
  /** Rolls back; a transaction that already ended without committing is not an error. */
  rollback(opts?: CallOptions): Promise<void>;
}

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

function keyText(key: ShardKey): string {
  if (typeof key === "bigint") return key.toString();
  if (typeof key === "number") {
    if (!Number.isSafeInteger(key)) throw invalid(`shard key ${key}: a number key must be a safe integer`);
    return String(key);
  }
  if (typeof key !== "string" || key === "") throw invalid("shard key: expected a non-empty string or an integer");
  return key;
}

function int64(name: string, x: number | bigint): bigint {
  if (typeof x === "bigint") return x;
  if (typeof x !== "number" || !Number.isSafeInteger(x)) throw invalid(`${name}: expected an integer, got ${String(x)}`);
  return BigInt(x);
}

const preferences: Record<ReadPreferenceName, ReadPreference> = {
  primary: ReadPreference.PRIMARY,
  primaryPreferred: ReadPreference.PRIMARY_PREFERRED,
  replicaPreferred: ReadPreference.REPLICA_PREFERRED,
  replica: ReadPreference.REPLICA,
};

function maxReplicaLag(ms: number | undefined): number {
  if (ms === undefined) return 0;
  if (!Number.isInteger(ms) || ms < 0 || ms > 0xffff_ffff) throw invalid(`maxReplicaLagMs: expected a whole number of milliseconds >= 0, got ${String(ms)}`);
  return ms;
}

function readPreference(name: ReadPreferenceName | undefined): ReadPreference {
  if (name === undefined) return ReadPreference.UNSPECIFIED;
  const p = preferences[name];
  if (p === undefined) throw invalid(`readPreference: ${JSON.stringify(name)} is not primary, primaryPreferred, replicaPreferred or replica`);
  return p;
}

const isolationLevels: Record<IsolationLevelName, IsolationLevel> = {
  "read committed": IsolationLevel.READ_COMMITTED,
  "repeatable read": IsolationLevel.REPEATABLE_READ,
  serializable: IsolationLevel.SERIALIZABLE,
};

function isolationLevel(name: IsolationLevelName | undefined): IsolationLevel {
  if (name === undefined) return IsolationLevel.UNSPECIFIED;
  const level = isolationLevels[name];
  if (level === undefined) throw invalid(`isolationLevel: ${JSON.stringify(name)} is not "read committed", "repeatable read" or "serializable"`);
  return level;
}

const outcomeOf = (o: TransactionOutcome): Outcome => (o === TransactionOutcome.COMMITTED ? "committed" : "unspecified");
const nodesOf = (nodes: NodeInfo[]): NodeInfo[] => nodes.map(({ name, address, role, status }) => ({ name, address, role, status }));
const connectOptions = (o: CallOptions | undefined): ConnectCallOptions => ({ timeoutMs: o?.timeoutMs, signal: o?.signal, headers: o?.headers });

export interface ClientSettings {
  decode?: DecodeOptions;
  /** Releases what the transport holds (the node entry's connections); fetch transports hold nothing. */
  close?: () => void;
}

export class ShardRouterClient {
  /** The generated client, for anything this class does not wrap. Its errors are plain ConnectErrors. */
  readonly rpc: Client<typeof RouterService>;
  private readonly decode: DecodeOptions;

  constructor(transport: Transport, private readonly settings: ClientSettings = {}) {
    this.rpc = createClient(RouterService, transport);
    this.decode = settings.decode ?? {};
  }

  /** Where a key lives (no database is touched). */
  route(key: ShardKey, opts?: CallOptions): Promise<RouteInfo> {
    return call(async () => {
      const r = await this.rpc.route({ key: keyText(key) }, connectOptions(opts));
      return { shard: r.shard, keyspaceId: r.keyspaceId, strategy: r.strategy, nodes: nodesOf(r.nodes), shardMapVersion: r.shardMapVersion };
    });
  }

  /** Statements on the shard owning `key`: `client.onShard("acct-1").query("select … where id = $1", ["acct-1"])`. */
  onShard(key: ShardKey): ShardScope {
    const query = <R>(sql: string, params?: readonly SqlParam[], opts?: QueryOptions) => call(async () => {
      const r = await this.rpc.executeOnShard({
        key: keyText(key), sql, params: encodeParams(params), readPreference: readPreference(opts?.readPreference),
      }, connectOptions(opts));
      return { shard: r.shard, ...decodeResult<R>(r.result, this.decodeFor(opts), opts?.rowMode) };
    });
    const begin = (opts?: BeginOptions) => call(async () => {
      const r = await this.rpc.beginTransaction({
        key: keyText(key), isolationLevel: isolationLevel(opts?.isolationLevel), readOnly: !!opts?.readOnly, idleTimeoutMs: opts?.idleTimeoutMs ?? 0,
      }, connectOptions(opts));
      return this.interactive(r.transactionToken, r.shard);
    });
    return {
      key: typeof key === "string" ? key : String(key),
      query,
      sql: templated(query),
      begin,
      transaction: async <T>(fn: (tx: ShardTransaction) => Promise<T>, opts?: BeginOptions) => {
        const tx = await begin(opts);
        let result: T;
        try {
          result = await fn(tx);
        } catch (err) {
          // If this rollback cannot reach the router, the router's idle timeout rolls back instead.
          await tx.rollback().catch(() => {});
          throw err;
        }
        try {
          await tx.commit();
        } catch (err) {
          // Commit got no answer (a deadline, the network)? Then end the session rather than leave it
          // to the idle timeout; after an answered commit (Aborted) this sends nothing.
          await tx.rollback().catch(() => {});
          throw err;
        }
        return result;
      },
    };
  }

  private interactive(token: string, shard: string): ShardTransaction {
    /** Why no more statements may be sent on it. */
    let ended: string | undefined;
    /** The router answered a commit or a rollback: nothing is left for rollback() to do. */
    let settled = false;
    /** A commit failed: its own error said what became of the transaction. */
    let commitFailed = false;
    const open = () => {
      if (ended) throw new ConnectError(`this transaction ${ended}: begin a new one`, Code.FailedPrecondition);
    };
    const query = <R>(sql: string, params?: readonly SqlParam[], opts?: TransactionQueryOptions) => call(async () => {
      open();
      const r = await this.rpc.executeInTransaction({ transactionToken: token, sql, params: encodeParams(params) }, connectOptions(opts));
      return { shard: r.shard, ...decodeResult<R>(r.result, this.decodeFor(opts), opts?.rowMode) };
    });
    return {
      shard,
      query,
      sql: templated(query),
      commit: (opts?: CallOptions) => call(async () => {
        open();
        ended = "was committed";
        try {
          await this.rpc.commitTransaction({ transactionToken: token }, connectOptions(opts));
          settled = true;
        } catch (err) {
          // Not necessarily over on the router: a commit whose deadline passed while it waited
          // behind a statement never ran, so rollback() must still reach the router.
          ended = "failed to commit";
          commitFailed = true;
          throw err;
        }
      }),
      rollback: (opts?: CallOptions) => call(async () => {
        if (settled) return;
        ended ??= "was rolled back";
        try {
          await this.rpc.rollbackTransaction({ transactionToken: token }, connectOptions(opts));
          settled = true;
        } catch (err) {
          // After a failed commit the router may know the token no longer (its outcome unknown): the commit said so.
          if (commitFailed && ConnectError.from(err).code === Code.NotFound) return void (settled = true);
          throw err;
        }
      }),
    };
  }

  /**
   * One statement where the router reads it should go: the shard its key pins, the shards of the keys
   * it lists, one shard for reference tables, or every shard, merged as its ORDER BY, LIMIT, GROUP BY
   * and aggregates ask. A write on several shards commits on all of them together (two-phase commit).
   * What cannot be answered correctly across shards is refused (InvalidArgument) naming the construct.
   */
  execute<R = Row>(sql: string, params?: readonly SqlParam[], opts: ExecuteOptions = {}): Promise<ExecuteResult<R>> {
    return call(async () => {
      if (opts.requestId !== undefined && typeof opts.requestId !== "string") throw invalid("requestId: expected a string");
      const r = await this.rpc.execute({
        sql, params: encodeParams(params), readPreference: readPreference(opts.readPreference), maxReplicaLagMs: maxReplicaLag(opts.maxReplicaLagMs),
        allowScatterWrite: !!opts.allowScatterWrite, requestId: opts.requestId ?? "",
      }, connectOptions(opts));
      return {
        ...decodeResult<R>(r.result, this.decodeFor(opts), opts.rowMode),
        shards: r.shards, routing: r.routing, twoPhase: r.twoPhase, transactionId: r.transactionId, replayed: r.replayed, shardMapVersion: r.shardMapVersion,
      };
    });
  }

  /**
   * execute() as a tagged template: `` router.sql`select … from accounts where id = ${id}` `` sends
   * `… where id = $1` with `id` as a bound parameter, never as text. For options, use execute().
   */
  // A property, so `const { sql } = router` keeps working.
  readonly sql: <R = Row>(strings: TemplateStringsArray, ...values: SqlParam[]) => Promise<ExecuteResult<R>> = (strings, ...values) => call(async () => {
    const s = fromTemplate(strings, values, "execute(sql, params)");
    return this.execute(s.sql, s.params);
  });

  /** How the router reads a statement, without running it: the shards and why, the merge, each shard's statement. */
  explain(sql: string, params?: readonly SqlParam[], opts?: CallOptions): Promise<ExplainResult> {
    return call(async () => explainResultOf(await this.rpc.explain({ sql, params: encodeParams(params) }, connectOptions(opts))));
  }

  /**
   * One statement on every shard in parallel, merged as `opts` says (concatenated in shard order by
   * default; `merge: "auto"` derives the merge from the statement, as execute() does).
   */
  all<R = Row>(sql: string, params?: readonly SqlParam[], opts: AllOptions = {}): Promise<AllResult<R>> {
    return call(async () => {
      const r = await this.rpc.executeOnAll({
        sql, params: encodeParams(params), merge: mergeSpec(opts), allowPartial: !!opts.allowPartial,
        readPreference: readPreference(opts.readPreference),
      }, connectOptions(opts));
      return {
        ...decodeResult<R>(r.result, this.decodeFor(opts), opts.rowMode),
        shards: r.shards.map((s) => ({
          shard: s.shard, rowCount: Number(s.rowCount), elapsedMs: s.elapsedMs,
          ...(s.error && (s.error.code || s.error.message)
            ? { error: { code: codeFromString(s.error.code) ?? Code.Unknown, message: s.error.message, ...(s.error.sqlstate ? { sqlstate: s.error.sqlstate } : {}) } }
            : {}),
        })),
      };
    });
  }

  /** Moves `amount` from one account to another atomically (two-phase commit across shards). */
  transfer(from: ShardKey, to: ShardKey, amount: number | bigint, opts?: TransferOptions): Promise<TransferResult> {
    return call(async () => {
      const requestId = opts?.requestId ?? crypto.randomUUID();
      const r = await this.rpc.transfer({ fromKey: keyText(from), toKey: keyText(to), amount: int64("amount", amount), requestId }, connectOptions(opts));
      return {
        outcome: outcomeOf(r.outcome), fromShard: r.fromShard, toShard: r.toShard, twoPhase: r.twoPhase,
        fromBalance: r.fromBalance, toBalance: r.toBalance, transactionId: r.transactionId, replayed: r.replayed, requestId,
      };
    });
  }

  /** Statements on their keys' shards, all committed or none. */
  transaction<R = Row>(statements: readonly TransactionStatement[], opts?: TransactionOptions): Promise<TransactionResult<R>> {
    return call(async () => {
      if (!Array.isArray(statements)) throw invalid("transaction: expected an array of { key, sql, params }");
      const requestId = opts?.requestId ?? crypto.randomUUID();
      const r = await this.rpc.executeTransaction({
        requestId,
        statements: statements.map((s, i) => ({ key: keyText(s.key), sql: s.sql, params: encodeStatementParams(s, i) })),
      }, connectOptions(opts));
      const decode = this.decodeFor(opts);
      return {
        outcome: outcomeOf(r.outcome),
        results: r.results.map((s) => ({ shard: s.shard, ...decodeResult<R>(s.result, decode) })),
        twoPhase: r.twoPhase, transactionId: r.transactionId, replayed: r.replayed, shards: r.shards, requestId,
      };
    });
  }

  /** Every shard: nodes, status, weight and the keys it owns. */
  topology(opts?: CallOptions): Promise<Topology> {
    return call(async () => {
      const r = await this.rpc.getTopology({}, connectOptions(opts));
      return {
        strategy: r.strategy, shardMapVersion: r.shardMapVersion, inDoubtTransactions: r.inDoubtTransactions,
        shards: r.shards.map((s) => ({
          name: s.name, status: s.status, state: s.state, weight: s.weight, nodes: nodesOf(s.nodes),
          ownership: { description: s.ownership?.description ?? "", keyspaceFraction: s.ownership?.keyspaceFraction ?? 0 },
        })),
      };
    });
  }

  /**
   * A new global id: a positive 64-bit integer (fits a Postgres bigint), unique across every router on
   * one catalog and increasing on one router. Use it as a sharded table's primary key (and, if you
   * like, its shard key): `insert into orders (id, …) values ($1, …)`.
   */
  async nextId(opts?: CallOptions): Promise<bigint> {
    const [id] = await this.nextIds(1, opts);
    return id;
  }

  /** `count` new global ids (1 to 10000), increasing. */
  nextIds(count: number, opts?: CallOptions): Promise<bigint[]> {
    return call(async () => {
      if (!Number.isSafeInteger(count) || count < 1 || count > 10_000) throw invalid(`nextIds: count must be an integer from 1 to 10000, got ${String(count)}`);
      const r = await this.rpc.nextIds({ count }, connectOptions(opts));
      return r.ids;
    });
  }

  /** Closes the connections of a client from the node entry (keep-alive HTTP/1.1, or HTTP/2 for gRPC); a no-op for fetch clients. */
  close(): void {
    this.settings.close?.();
  }

  private decodeFor(opts: { decode?: DecodeOptions } | undefined): DecodeOptions {
    return opts?.decode ? { ...this.decode, ...opts.decode } : this.decode;
  }
}

function encodeStatementParams(s: TransactionStatement, index: number) {
  try {
    return encodeParams(s.params);
  } catch (err) {
    const e = ConnectError.from(err);
    throw new ConnectError(`statement ${index + 1}: ${e.rawMessage}`, e.code);
  }
}

/** The tagged-template form of a query function: the literal's values become its bound parameters. */
function templated(query: <R>(sql: string, params?: readonly SqlParam[]) => Promise<ShardResult<R>>) {
  return <R>(strings: TemplateStringsArray, ...values: SqlParam[]): Promise<ShardResult<R>> => call(async () => {
    const s = fromTemplate(strings, values);
    return query<R>(s.sql, s.params);
  });
}

async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toShardRouterError(err);
  }
}
