// The RouterService handlers: validate, ask the planner where, hand the statement to execution.
// No handler touches a database or computes placement itself.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { type MergeSpec, ReplicationSlotSchema, RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import type { Caller } from "../auth/caller.js";
import type { Config } from "../config/config.js";
import type { Planner } from "../execution/planner.js";
import { scatterGather } from "../execution/scatter-gather.js";
import { executeStatement, newBudget } from "../execution/shard-executor.js";
import { checkStatement, checkTransactionStatement } from "../sql/statement-guard.js";
import { type EncodedParam, encodeParam } from "../execution/value-codec.js";
import { onFirstAnswering } from "../execution/read-failover.js";
import type { Coordinator } from "../transactions/coordinator.js";
import { executeTransaction } from "../transactions/execute-transaction.js";
import type { InteractiveTransactions } from "../transactions/interactive.js";
import { TransactionOutcome } from "../../gen/shardrouter/v1/transactions_pb.js";
import type { Recovery } from "../transactions/recovery.js";
import { transfer } from "../transactions/transfer.js";
import type { WriteFence, WriteKeys } from "../resharding/write-fence.js";
import { staleEpochSqlstate } from "../resharding/epoch-guard.js";
import { sqlstateOf } from "../execution/postgres-errors.js";
import { changesSchema, isReadOnly, schemaChange } from "../sql/statement-kind.js";
import { replicationSlots } from "../resharding/slot-lag.js";
import { describeNodes, shardStatus } from "./topology.js";
import { maxIdsPerCall } from "../ids/snowflake.js";
import { mergeSpec, StatementPlanner } from "../sql-planning/statement-plan.js";
import { refusalError } from "../sql-planning/refusals.js";
import { catalogColumns, TableSchemas } from "../sql-planning/table-schemas.js";
import { execute } from "./execute.js";

export interface RouterServiceDeps {
  planner: Planner;
  coordinator: Coordinator;
  recovery: Recovery;
  /** BeginTransaction … CommitTransaction: the session table. */
  interactive: InteractiveTransactions;
  config: Pick<Config, "limits" | "transfer"> & Partial<Pick<Config, "tables">>;
  /** Holds writes to moving keys during a resharding cutover (routers with a catalog). */
  fence?: WriteFence;
  /** A source refused a write because this router's shard map is old: look for the new one now. */
  onStaleMap?: () => Promise<void>;
  /** NextIds: the router's global id generator (ids/snowflake.ts). */
  ids?: { next(count: number): Promise<{ ids: bigint[]; workerId: number }> };
}

/** All a handler reads of its call: the signal that ends it (deadline, caller gone). */
export interface CallContext {
  readonly signal: AbortSignal;
  /** Who called (auth); undefined when the router serves without auth (--insecure): its own login. */
  readonly caller?: Caller;
}

type Impl = ServiceImpl<typeof RouterService>;
/**
 * The handlers, callable by connect-node (as a ServiceImpl) and by the unary fast path
 * (unary-handler.ts), which has no HandlerContext to give: only a CallContext.
 */
export type RouterHandlers = { [K in keyof Impl]: (req: Parameters<Impl[K]>[0], ctx: CallContext) => ReturnType<Impl[K]> };

export function routerService({ planner, coordinator, recovery, interactive, config, fence, onStaleMap, ids }: RouterServiceDeps): RouterHandlers {
  const limits = config.limits;
  // Tables' columns from the shards' catalog: keys placed by their column's type, GROUP BY aliases told from columns.
  const statements = new StatementPlanner(config.tables ?? { sharded: {}, reference: [] }, undefined, new TableSchemas(catalogColumns(planner)));
  /** A read goes to the shards that own keys; a write to every configured shard (as ExecuteOnAll). */
  const everyShard = (write: boolean) => (write ? planner.shards.shards : planner.map.shards).map((s) => s.name);
  /** DDL and TRUNCATE are not replicated: refused while a reshard job moves rows. */
  function refuseSchemaChange(sql: string): void {
    if (!fence || fence.activeJobs.length === 0) return;
    const kind = schemaChange(sql);
    if (kind) {
      throw new ConnectError(
        `${kind.replace(/Stmt$/, "")} is refused while reshard job ${fence.activeJobs.map((j) => j.id).join(", ")} runs: schema changes and TRUNCATE are not carried to the new shards; ` +
        "run it after the job, or cancel the job", Code.FailedPrecondition);
    }
  }

  /** Runs a statement; when it changes a schema, the tables' columns are read afresh afterwards (success or not). */
  async function schemaAware<T>(sql: string, run: () => Promise<T>): Promise<T> {
    if (!changesSchema(sql)) return run();
    try {
      return await run();
    } finally {
      statements.schemaChanged();
    }
  }

  /**
   * Runs a write under the fence (admitted before it is routed, so a held write is routed afresh).
   * A source that refused it for a stale map (SR001) refused it whole, before it changed anything:
   * once this router has a newer map, it runs again on that one.
   */
  async function write<T>(keys: WriteKeys | undefined, signal: AbortSignal, run: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const release = fence && keys ? await fence.admit(keys, signal) : undefined;
      const version = planner.map.version;
      try {
        return await run();
      } catch (err) {
        if (!onStaleMap || sqlstateOf(err) !== staleEpochSqlstate) throw err;
        await onStaleMap();
        if (attempt >= 2 || planner.map.version === version || signal.aborted) throw err;
      } finally {
        release?.();
      }
    }
  }
  /** ExecuteOnAll with merge.auto: the merge Execute would derive, and the statement shards then get. */
  async function derivedMerge(sql: string, params: Value[], given: MergeSpec): Promise<{ sql: string; merge: MergeSpec | undefined }> {
    if (given.orderBy.length || given.limit !== undefined || given.offset || given.groupBy.length || given.aggregates.length) {
      throw new ConnectError("merge.auto derives the whole merge from the statement: leave order_by, limit, offset, group_by and aggregates empty", Code.InvalidArgument);
    }
    const analysis = statements.analyze(sql);
    const refused = analysis.routing.refusals.find((r) => !r.anyShards) ?? statements.mergeRefusal(analysis, await statements.columns(analysis));
    if (refused && planner.shards.shards.length > 1) throw refusalError(refused);
    return { sql: analysis.multiShardSql, merge: analysis.merge ? mergeSpec(analysis.merge, params) : undefined };
  }

  return {
    async route(req) {
      const map = planner.map; // the answer describes one version
      const { placement, shard } = await planner.route(req.key, map);
      return {
        shard: placement.shard,
        keyspaceId: placement.keyspaceId,
        strategy: map.strategy.name,
        nodes: describeNodes(shard),
        shardMapVersion: BigInt(map.version),
      };
    },

    async explain(req) {
      const map = planner.map; // the answer describes one version
      const e = await statements.explain(req.sql, req.params, map, everyShard);
      const analysis = statements.analyze(req.sql);
      const keysOf = new Map(e.decision.keys.map((k) => [k.group, k.values]));
      return {
        shards: e.decision.shards,
        routing: e.reason,
        tables: analysis.routing.tables.map((t) => ({
          name: t.name, alias: t.alias, role: t.role, keyColumn: t.keyColumn ?? "",
          keyValues: t.role === "sharded" ? (keysOf.get(t.group!) ?? []).map((v) => v ?? "NULL") : [],
        })),
        merge: e.merge,
        mergeDescription: e.mergeDescription,
        statements: e.statements.map((s) => ({ shard: s.shard, sql: s.sql, paramNumbers: s.params })),
        shardMapVersion: BigInt(map.version),
        statementKind: analysis.routing.statementKind,
      };
    },

    async execute(req, ctx) {
      return execute(req, ctx, { planner, coordinator, statements, limits, everyShard, fenced: write, refuseSchemaChange, schemaAware });
    },

    async executeOnShard(req, ctx) {
      const isolated = checkStatement(req.sql) === "isolated";
      const params = encodeParams(req.params);
      const readOnly = isReadOnly(req.sql);
      if (!readOnly) refuseSchemaChange(req.sql);
      return write(fence && !readOnly ? [req.key] : undefined, ctx.signal, () => schemaAware(req.sql, async () => {
        const { shard } = await planner.route(req.key);
        const candidates = planner.candidates(shard, req.readPreference, req.maxReplicaLagMs);
        const result = await onFirstAnswering(candidates, ctx.signal, (pool) => executeStatement({
          shard: shard.name, pool, sql: req.sql, params, signal: ctx.signal, budget: newBudget(limits.maxRows, limits.maxBytes), isolated,
          login: ctx.caller?.loginFor(shard.name),
        }));
        return { shard: shard.name, result };
      }));
    },

    async executeOnAll(req, ctx) {
      const isolated = checkStatement(req.sql) === "isolated";
      // A read goes to the shards that own keys under the map in force; a write (DDL included) to
      // every configured shard, so spare shards get the tables a reshard will fill.
      const readOnly = isReadOnly(req.sql);
      if (!readOnly) refuseSchemaChange(req.sql);
      const map = planner.map;
      const { sql, merge } = req.merge?.auto ? await derivedMerge(req.sql, req.params, req.merge) : req;
      return write(fence && !readOnly ? "all" : undefined, ctx.signal, () => schemaAware(req.sql, () => scatterGather(planner.shards, {
        sql, isolated, params: encodeParams(req.params), merge, derivedMerge: req.merge?.auto, allowPartial: req.allowPartial,
        readPreference: req.readPreference, maxReplicaLagMs: req.maxReplicaLagMs, signal: ctx.signal, budget: newBudget(limits.maxRows, limits.maxBytes),
        only: readOnly ? new Set(map.shards.map((s) => s.name)) : undefined, loginFor: ctx.caller?.loginFor,
      })));
    },

    async transfer(req, ctx) {
      return write([req.fromKey, req.toKey], ctx.signal, () => transfer(req, { planner, coordinator, table: config.transfer }, ctx.signal, ctx.caller));
    },

    async executeTransaction(req, ctx) {
      for (const s of req.statements) refuseSchemaChange(s.sql);
      const run = () => executeTransaction(req, { planner, coordinator, limits }, ctx.signal, ctx.caller);
      const ddl = req.statements.find((s) => changesSchema(s.sql));
      return write(req.statements.map((s) => s.key), ctx.signal, ddl ? () => schemaAware(ddl.sql, run) : run);
    },

    async beginTransaction(req, ctx) {
      const opened = await interactive.begin(
        { key: req.key, readOnly: req.readOnly, isolation: req.isolationLevel, idleTimeoutMs: req.idleTimeoutMs }, ctx.caller, ctx.signal);
      return { transactionToken: opened.token, shard: opened.shard, idleTimeoutMs: opened.idleTimeoutMs, maxLifetimeMs: opened.maxLifetimeMs };
    },

    async executeInTransaction(req, ctx) {
      checkTransactionStatement(req.sql); // transaction control is refused as such, not as a schema change
      if (!isReadOnly(req.sql)) refuseSchemaChange(req.sql);
      return interactive.execute(req.transactionToken, req.sql, encodeParams(req.params), ctx.caller, ctx.signal);
    },

    async commitTransaction(req, ctx) {
      const { shard } = await interactive.commit(req.transactionToken, ctx.caller, ctx.signal);
      return { outcome: TransactionOutcome.COMMITTED, shard };
    },

    async rollbackTransaction(req, ctx) {
      return interactive.rollback(req.transactionToken, ctx.caller, ctx.signal);
    },

    async getTopology() {
      const map = planner.map;
      // While a job runs: a shard that gains keys under its map is receiving; one that loses all, draining.
      const jobState = (name: string, state: string) => {
        for (const job of fence?.activeJobs ?? []) {
          const next = job.shards.find((s) => s.name === name)?.state;
          const owns = state === "active" || state === "draining";
          if (!owns && next === "active") return "receiving";
          if (owns && next !== undefined && next !== "active") return "draining";
        }
        return state;
      };
      const slots = await Promise.all(planner.shards.shards.map((shard) => replicationSlots(shard)));
      return {
        strategy: map.strategy.name,
        shardMapVersion: BigInt(map.version),
        shards: planner.shards.shards.map((shard, i) => {
          const inMap = map.shards.find((s) => s.name === shard.name);
          const state = jobState(shard.name, map.states[shard.name] ?? "spare");
          return {
            name: shard.name,
            status: shardStatus(shard),
            nodes: describeNodes(shard),
            ownership: inMap ? map.strategy.ownership(shard.name) : { description: `owns no keys (${state})`, keyspaceFraction: 0 },
            weight: inMap?.weight ?? shard.weight,
            state,
            replicationSlots: slots[i].map((x) => create(ReplicationSlotSchema, x)),
          };
        }),
        inDoubtTransactions: recovery.inDoubt,
      };
    },

    async nextIds(req) {
      if (req.count < 1 || req.count > maxIdsPerCall) {
        throw new ConnectError(`count must be between 1 and ${maxIdsPerCall}, got ${req.count}`, Code.InvalidArgument);
      }
      if (!ids) throw new ConnectError("this router issues no ids", Code.Unavailable);
      return ids.next(req.count);
    },
  };
}

function encodeParams(values: Value[]): EncodedParam[] {
  return values.map((v, i) => encodeParam(v, i + 1));
}
