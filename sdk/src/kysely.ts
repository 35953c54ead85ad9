// "@shardrouter/sdk/kysely": Kysely over the router. ShardRouterDialect binds a Kysely instance to one
// shard key: every query runs on the shard that owns it (ExecuteOnShard), and db.transaction() is an
// interactive transaction there (BeginTransaction … CommitTransaction), savepoints included.
// ShardRouterExecuteDialect needs no key: each statement goes to Execute, where the router reads
// which shards it needs and how their rows merge (writes on several shards commit together).
// ShardRouterScatterDialect runs read-only queries on every shard and merges the rows as
// ExecuteOnAll does. Kysely's own Postgres compiler, adapter and introspector do the SQL.
import { Code } from "@connectrpc/connect";
import {
  AbortedTransactionError, type CompiledQuery, type DatabaseConnection, type DatabaseIntrospector, type Dialect,
  type DialectAdapter, type Driver, IdentifierNode, type Kysely, PostgresAdapter, PostgresIntrospector,
  PostgresQueryCompiler, type QueryCompiler, type QueryResult, RawNode, type TransactionSettings, createQueryId,
} from "kysely";
import type { AllOptions, ExecuteOptions, IsolationLevelName, ShardKey, ShardRouterClient, ShardScope, ShardTransaction } from "./client.ts";
import { ShardRouterError } from "./errors.ts";
import type { QueryResult as RouterResult } from "./results.ts";
import type { SqlParam } from "./values.ts";

export interface ShardRouterDialectConfig {
  client: ShardRouterClient;
  /** Every query of this Kysely instance runs on the shard that owns this key. */
  key: ShardKey;
}

/** The SQL side is Kysely's own PostgreSQL; the dialects differ only in where statements go. */
abstract class PostgresOverRouter implements Dialect {
  abstract createDriver(): Driver;

  createQueryCompiler(): QueryCompiler {
    return new PostgresQueryCompiler();
  }

  createAdapter(): DialectAdapter {
    return new PostgresAdapter();
  }

  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new PostgresIntrospector(db);
  }
}

/** Kysely on the shard owning one key: `new Kysely<DB>({ dialect: new ShardRouterDialect({ client, key }) })`. */
export class ShardRouterDialect extends PostgresOverRouter {
  readonly #config: ShardRouterDialectConfig;

  constructor(config: ShardRouterDialectConfig) {
    super();
    this.#config = config;
  }

  createDriver(): Driver {
    return new ShardDriver(this.#config.client.onShard(this.#config.key));
  }
}

export interface ShardRouterExecuteDialectConfig extends Pick<ExecuteOptions, "readPreference" | "maxReplicaLagMs" | "allowScatterWrite" | "decode"> {
  client: ShardRouterClient;
}

/**
 * Kysely without a shard key: every statement goes to the router's Execute, which reads it and runs
 * it on the shard its key pins (`where("id", "=", id)`, an insert's rows), on the shards of the keys
 * it lists, or on every shard, merged as its ORDER BY, LIMIT, GROUP BY and aggregates ask. A write on
 * several shards commits on all of them together. Transactions are refused: an interactive one lives
 * on one shard (ShardRouterDialect), statements known up front go to client.transaction([...]).
 */
export class ShardRouterExecuteDialect extends PostgresOverRouter {
  readonly #config: ShardRouterExecuteDialectConfig;

  constructor(config: ShardRouterExecuteDialectConfig) {
    super();
    this.#config = config;
  }

  createDriver(): Driver {
    return new ExecuteDriver(this.#config);
  }
}

export interface ShardRouterScatterDialectConfig extends Omit<AllOptions, "rowMode"> {
  client: ShardRouterClient;
}

/**
 * Read-only Kysely over every shard: each SELECT runs on all shards and the rows are merged as the
 * options say (orderBy, limit, offset, groupBy, aggregates, or merge: "auto" to derive them from each
 * statement; concatenated in shard order without them).
 * Writes and transactions are refused: they need a shard key (ShardRouterDialect).
 */
export class ShardRouterScatterDialect extends PostgresOverRouter {
  readonly #config: ShardRouterScatterDialectConfig;

  constructor(config: ShardRouterScatterDialectConfig) {
    super();
    this.#config = config;
  }

  createDriver(): Driver {
    return new ScatterDriver(this.#config);
  }
}

const writes = new Set(["INSERT", "UPDATE", "DELETE", "MERGE"]);

function kyselyResult<R>(r: RouterResult<R>): QueryResult<R> {
  return writes.has(r.command) ? { rows: r.rows, numAffectedRows: BigInt(r.rowsAffected) } : { rows: r.rows };
}

const params = (q: CompiledQuery): SqlParam[] => q.parameters as SqlParam[];

/** A Kysely connection: statements go to the key's shard, or into the transaction begun on it. */
class ShardConnection implements DatabaseConnection {
  transaction: ShardTransaction | undefined;

  constructor(private readonly scope: ShardScope) {}

  async executeQuery<R>(q: CompiledQuery): Promise<QueryResult<R>> {
    const r = this.transaction ? await this.transaction.query<R>(q.sql, params(q)) : await this.scope.query<R>(q.sql, params(q));
    return kyselyResult(r);
  }

  streamQuery<R>(q: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    return inChunks(this.executeQuery<R>(q), chunkSize);
  }
}

// The router answers with whole results (bounded by its row and byte limits), so a stream is the
// whole result handed over in chunks: it saves no memory, but lets streaming code run unchanged.
async function* inChunks<R>(result: Promise<QueryResult<R>>, chunkSize = 100): AsyncIterableIterator<QueryResult<R>> {
  const { rows } = await result;
  for (let i = 0; i < rows.length; i += chunkSize) yield { rows: rows.slice(i, i + chunkSize) };
}

const isolation: Record<string, IsolationLevelName | undefined> = {
  "read uncommitted": "read committed", // Postgres runs READ UNCOMMITTED as READ COMMITTED
  "read committed": "read committed",
  "repeatable read": "repeatable read",
  serializable: "serializable",
};

class ShardDriver implements Driver {
  constructor(private readonly scope: ShardScope) {}

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    return new ShardConnection(this.scope);
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    const isolationLevel = settings.isolationLevel && isolation[settings.isolationLevel];
    if (settings.isolationLevel && !isolationLevel) throw new TypeError(`isolation level "${settings.isolationLevel}": PostgreSQL has no such level`);
    (connection as ShardConnection).transaction = await this.scope.begin({ isolationLevel, readOnly: settings.accessMode === "read only" });
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    const c = connection as ShardConnection;
    try {
      await c.transaction!.commit();
      c.transaction = undefined;
    } catch (err) {
      // The router answers ABORTED when Postgres rolled the transaction back instead (a failed statement).
      if (err instanceof ShardRouterError && err.code === Code.Aborted) {
        c.transaction = undefined;
        throw new AbortedTransactionError();
      }
      throw err; // outcome unknown (a deadline, the network): Kysely rolls back next, which must reach the router
    }
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    const c = connection as ShardConnection;
    const tx = c.transaction;
    c.transaction = undefined;
    await tx?.rollback();
  }

  async savepoint(connection: DatabaseConnection, name: string, compileQuery: QueryCompiler["compileQuery"]): Promise<void> {
    await connection.executeQuery(compileQuery(savepointCommand("savepoint", name), createQueryId()));
  }

  async rollbackToSavepoint(connection: DatabaseConnection, name: string, compileQuery: QueryCompiler["compileQuery"]): Promise<void> {
    await connection.executeQuery(compileQuery(savepointCommand("rollback to", name), createQueryId()));
  }

  async releaseSavepoint(connection: DatabaseConnection, name: string, compileQuery: QueryCompiler["compileQuery"]): Promise<void> {
    await connection.executeQuery(compileQuery(savepointCommand("release", name), createQueryId()));
  }

  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    // A connection released inside a transaction (Kysely never does this) must not hold the router's slot.
    const c = connection as ShardConnection;
    if (c.transaction) await this.rollbackTransaction(c);
  }

  async destroy(): Promise<void> {}
}

/** `savepoint "name"` with the name quoted by the compiler (as Kysely's own Postgres driver does). */
function savepointCommand(command: string, name: string): RawNode {
  return RawNode.createWithChildren([RawNode.createWithSql(`${command} `), IdentifierNode.create(name)]);
}

/** The drivers without a shard key: no connection to hold, and beginTransaction refuses, so nothing to end. */
abstract class KeylessDriver implements Driver {
  abstract acquireConnection(): Promise<DatabaseConnection>;

  abstract beginTransaction(): Promise<void>;

  async init(): Promise<void> {}

  async commitTransaction(): Promise<void> {}

  async rollbackTransaction(): Promise<void> {}

  async releaseConnection(): Promise<void> {}

  async destroy(): Promise<void> {}
}

class ExecuteDriver extends KeylessDriver {
  constructor(private readonly config: ShardRouterExecuteDialectConfig) {
    super();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    // Only the options the config type names: a requestId or rowMode passed from plain JavaScript
    // would otherwise reach every statement (one id reused, rows Kysely cannot read).
    const { client, readPreference, maxReplicaLagMs, allowScatterWrite, decode } = this.config;
    const options = { readPreference, maxReplicaLagMs, allowScatterWrite, decode };
    const executeQuery = async <R>(q: CompiledQuery): Promise<QueryResult<R>> => kyselyResult(await client.execute<R>(q.sql, params(q), options));
    return { executeQuery, streamQuery: <R>(q: CompiledQuery, chunkSize?: number) => inChunks(executeQuery<R>(q), chunkSize) };
  }

  async beginTransaction(): Promise<void> {
    throw new TypeError("ShardRouterExecuteDialect: no transactions; use ShardRouterDialect for an interactive one on a key's shard, or client.transaction([...]) for statements on several shards");
  }
}

class ScatterDriver extends KeylessDriver {
  constructor(private readonly config: ShardRouterScatterDialectConfig) {
    super();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const { client, ...options } = this.config;
    return {
      async executeQuery<R>(q: CompiledQuery): Promise<QueryResult<R>> {
        if (q.query.kind !== "SelectQueryNode") {
          throw new TypeError(`ShardRouterScatterDialect runs SELECT only (got ${q.query.kind}): a write needs a shard key, use ShardRouterDialect`);
        }
        return kyselyResult(await client.all<R>(q.sql, params(q), options));
      },
      streamQuery(): AsyncIterableIterator<never> {
        throw new TypeError("ShardRouterScatterDialect: streaming is not supported; the merged result comes whole");
      },
    };
  }

  async beginTransaction(): Promise<void> {
    throw new TypeError("ShardRouterScatterDialect: a transaction needs a shard key; use ShardRouterDialect");
  }
}
