// "@shardrouter/sdk/drizzle": a Drizzle database bound to one shard key, on drizzle-orm/pg-proxy.
// Every query runs on the shard that owns the key; db.transaction() is an interactive transaction there
// (pg-proxy alone has none: a stateless callback cannot hold one), nested ones are savepoints.
// Drizzle asks for `method: "all"` when it maps rows by position: those come back as arrays.
import { DefaultLogger, type DrizzleConfig, type Logger, createTableRelationsHelpers, extractTablesRelationalConfig, sql } from "drizzle-orm";
import { PgDialect, type PgTransactionConfig } from "drizzle-orm/pg-core";
import { PgProxyTransaction, PgRemoteDatabase, PgRemoteSession, type RemoteCallback } from "drizzle-orm/pg-proxy";
import type { TablesRelationalConfig } from "drizzle-orm";
import type { IsolationLevelName, ShardKey, ShardRouterClient, ShardScope, ShardTransaction } from "./client.ts";
import type { SqlParam } from "./values.ts";

type Schema = { fullSchema: Record<string, unknown>; schema: TablesRelationalConfig; tableNamesMap: Record<string, string> };

/** What one Drizzle callback sends statements to: the shard, or a transaction begun on it. */
type Target = Pick<ShardScope | ShardTransaction, "query">;

function callbackOn(target: Target): RemoteCallback {
  return async (text, params, method) => {
    const r = await target.query(text, params as SqlParam[], { rowMode: method === "all" ? "array" : "object" });
    return { rows: r.rows };
  };
}

class ShardSession extends PgRemoteSession<Record<string, unknown>, TablesRelationalConfig> {
  constructor(
    private readonly scope: ShardScope,
    private readonly pgDialect: PgDialect,
    private readonly relational: Schema | undefined,
    private readonly config: DrizzleConfig<Record<string, unknown>>,
  ) {
    super(callbackOn(scope), pgDialect, relational, { logger: loggerOf(config), cache: config.cache });
  }

  override async transaction<T>(fn: (tx: PgProxyTransaction<Record<string, unknown>, TablesRelationalConfig>) => Promise<T>, config?: PgTransactionConfig): Promise<T> {
    if (config?.deferrable) throw new TypeError("transaction: deferrable is not supported by shardrouter's interactive transactions");
    // The SDK's transaction(): commits when fn resolves, rolls back when it throws (tx.rollback() throws
    // TransactionRollbackError, so it lands there too), and ends a session whose commit got no answer.
    return this.scope.transaction((begun) => {
      const session = new PgRemoteSession(callbackOn(begun), this.pgDialect, this.relational, { logger: loggerOf(this.config), cache: this.config.cache });
      return fn(new ShardDrizzleTransaction(this.pgDialect, session, this.relational));
    }, { isolationLevel: isolationOf(config?.isolationLevel), readOnly: config?.accessMode === "read only" });
  }
}

/** Nested transactions are savepoints, as in Drizzle's node-postgres driver. */
class ShardDrizzleTransaction extends PgProxyTransaction<Record<string, unknown>, TablesRelationalConfig> {
  override async transaction<T>(fn: (tx: PgProxyTransaction<Record<string, unknown>, TablesRelationalConfig>) => Promise<T>): Promise<T> {
    const self = this as unknown as { dialect: PgDialect; session: PgRemoteSession<Record<string, unknown>, TablesRelationalConfig>; schema: Schema | undefined; nestedIndex: number };
    const savepoint = `sp${self.nestedIndex + 1}`; // a fixed shape, never user text
    const tx = new ShardDrizzleTransaction(self.dialect, self.session, self.schema, self.nestedIndex + 1);
    await tx.execute(sql.raw(`savepoint ${savepoint}`));
    try {
      const result = await fn(tx);
      await tx.execute(sql.raw(`release savepoint ${savepoint}`));
      return result;
    } catch (err) {
      await tx.execute(sql.raw(`rollback to savepoint ${savepoint}`));
      throw err;
    }
  }
}

function loggerOf(config: DrizzleConfig<Record<string, unknown>>): Logger | undefined {
  return config.logger === true ? new DefaultLogger() : config.logger || undefined;
}

function isolationOf(level: PgTransactionConfig["isolationLevel"]): IsolationLevelName | undefined {
  return level === "read uncommitted" ? "read committed" : level; // Postgres runs READ UNCOMMITTED as READ COMMITTED
}

/**
 * A Drizzle database on the shard owning `key`: `const db = drizzle(router, "acct-1", { schema })`.
 * Cheap to make, so one per key (or per request) is fine.
 */
export function drizzle<TSchema extends Record<string, unknown> = Record<string, never>>(
  client: ShardRouterClient, key: ShardKey, config: DrizzleConfig<TSchema> = {},
): PgRemoteDatabase<TSchema> {
  const dialect = new PgDialect({ casing: config.casing });
  let relational: Schema | undefined;
  if (config.schema) {
    const tables = extractTablesRelationalConfig(config.schema, createTableRelationsHelpers);
    relational = { fullSchema: config.schema, schema: tables.tables, tableNamesMap: tables.tableNamesMap };
  }
  const session = new ShardSession(client.onShard(key), dialect, relational, config as DrizzleConfig<Record<string, unknown>>);
  const db = new PgRemoteDatabase(dialect, session, relational as never) as PgRemoteDatabase<TSchema>;
  // As drizzle-orm/pg-proxy's own drizzle() does with a cache.
  const withCache = db as unknown as { $cache?: Record<string, unknown> };
  withCache.$cache = config.cache as unknown as Record<string, unknown> | undefined;
  if (withCache.$cache) withCache.$cache.invalidate = config.cache?.onMutate;
  return db;
}
