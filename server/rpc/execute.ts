// Execute: the router reads the statement (sql-planning) and decides where it runs and how the
// answers combine; this file only carries out that decision:
//   one shard                 the statement as written, on the node the read preference picks;
//   several shards, a read    scatter-gather with the merge derived from the statement;
//   several shards, a write   one atomic transaction over them (two-phase commit).
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { type ExecuteRequest, type ExecuteResponse, ExecuteResponseSchema, ReadPreference } from "../../gen/shardrouter/v1/router_pb.js";
import { type ResultSet, ResultSetSchema } from "../../gen/shardrouter/v1/value_pb.js";
import type { Planner } from "../execution/planner.js";
import { onFirstAnswering } from "../execution/read-failover.js";
import { scatterGather } from "../execution/scatter-gather.js";
import { executeStatement, newBudget } from "../execution/shard-executor.js";
import { encodeParam } from "../execution/value-codec.js";
import { planMerge, runMerge } from "../execution/merge/plan.js";
import type { ShardMap } from "../placement/shard-map.js";
import type { WriteKeys } from "../resharding/write-fence.js";
import type { RoutingDecision } from "../sql-planning/routing.js";
import { reasonOf } from "../sql-planning/routing.js";
import { mergeSpec, type StatementAnalysis, type StatementPlanner } from "../sql-planning/statement-plan.js";
import { isSchemaChangeKind } from "../sql/statement-kind.js";
import { runAtomically } from "../transactions/atomic-statement.js";
import type { Coordinator } from "../transactions/coordinator.js";
import type { CallContext } from "./router-service.js";

export interface ExecuteDeps {
  planner: Planner;
  coordinator: Coordinator;
  statements: StatementPlanner;
  limits: { maxRows: number; maxBytes: number };
  /** The shards a statement for all goes to: owners of keys for a read, every configured shard for a write. */
  everyShard(write: boolean): readonly string[];
  /** Runs a write under the resharding fence (router-service's `write`). */
  fenced<T>(keys: WriteKeys | undefined, signal: AbortSignal, run: () => Promise<T>): Promise<T>;
  refuseSchemaChange(sql: string): void;
  /** Runs a statement that may change a schema: the tables' columns are read afresh after it. */
  schemaAware<T>(sql: string, run: () => Promise<T>): Promise<T>;
}

/** Writes that reach every shard only when asked: a forgotten WHERE must not touch every shard. */
const scatterWriteKinds = new Set(["UpdateStmt", "DeleteStmt", "MergeStmt"]);

export async function execute(req: ExecuteRequest, ctx: CallContext, deps: ExecuteDeps): Promise<ExecuteResponse> {
  const analysis = deps.statements.analyze(req.sql);
  const write = analysis.routing.write;
  if (!write) {
    const map = deps.planner.map; // one version decides, runs and is reported
    return run(req, ctx, deps, analysis, map, await deps.statements.route(analysis, req.params, map, deps.everyShard));
  }
  deps.refuseSchemaChange(req.sql);
  // The fence admits a write by the keys it pins, before it is routed: a write held through a
  // cutover is routed afresh, on the new map.
  const keys = fenceKeys(await deps.statements.route(analysis, req.params, deps.planner.map, deps.everyShard));
  const fenced = () => deps.fenced(keys, ctx.signal, async () => {
    const map = deps.planner.map;
    return run(req, ctx, deps, analysis, map, await deps.statements.route(analysis, req.params, map, deps.everyShard));
  });
  return isSchemaChangeKind(analysis.routing.statementKind) ? deps.schemaAware(req.sql, fenced) : fenced();
}

async function run(req: ExecuteRequest, ctx: CallContext, deps: ExecuteDeps, analysis: StatementAnalysis, map: ShardMap, decision: RoutingDecision): Promise<ExecuteResponse> {
  const { write, statementKind, tables } = analysis.routing;
  const unpinned = decision.keys.length === 0;
  // A SELECT that may write (it calls a function the router cannot read) over a sharded table asks
  // for the flag too: the router cannot tell what it changes on every shard.
  const mayWriteEverywhere = scatterWriteKinds.has(statementKind) ? tables[0]?.role !== "reference" : tables.some((t) => t.role === "sharded");
  if (write && unpinned && mayWriteEverywhere && !req.allowScatterWrite) {
    const what = statementKind === "SelectStmt" ? "a SELECT that may write (it calls a function the router cannot read)" : statementKind.replace(/Stmt$/, "").toUpperCase();
    const table = tables.find((t) => t.role === "sharded") ?? tables[0];
    throw new ConnectError(
      `${what} ${table ? `of ${table.name} ` : ""}pins no shard key, so it would run on every shard: ` +
      `pin the key in WHERE (${table?.keyColumn ?? "the key"} = $1, IN (…) or = ANY($1)), or set allow_scatter_write to run it on every shard atomically`,
      Code.InvalidArgument);
  }
  const params = req.params.map((v, i) => encodeParam(v, i + 1));
  const budget = newBudget(deps.limits.maxRows, deps.limits.maxBytes);
  const answer = (result: ResultSet, extra: { twoPhase?: boolean; transactionId?: string } = {}) => create(ExecuteResponseSchema, {
    result, shards: decision.shards, routing: reasonOf(decision), shardMapVersion: BigInt(map.version), ...extra,
  });

  // A write with a request id goes through the coordinator even on one shard: its record makes a retry safe.
  if (write && (decision.shards.length > 1 || req.requestId)) {
    const parts = deps.statements.shardStatements(analysis, decision, params.length)
      .map((s) => ({ shard: s.shard, sql: s.sql, params: s.params.map((n) => params[n - 1]!) }));
    // Every shard holds a copy of a reference table: one shard's count and RETURNING rows are the answer.
    const copies = analysis.copies;
    const spec = analysis.merge && decision.shards.length > 1 && !copies ? mergeSpec(analysis.merge, req.params) : undefined;
    return runAtomically({
      req, requestId: req.requestId || `execute.${randomUUID()}`, parts, isolated: analysis.isolated,
      keys: decision.keys.flatMap((k) => k.values.filter((v): v is string => v !== null)), map,
      respond: (results, o) => answer(combine(copies ? results.slice(0, 1) : results, spec), { twoPhase: o.twoPhase, transactionId: o.transactionId }),
      signal: ctx.signal, budget, caller: ctx.caller,
    }, deps);
  }

  if (decision.shards.length === 1) {
    const shard = deps.planner.shards.shard(decision.shards[0]!);
    const preference = write ? ReadPreference.PRIMARY : req.readPreference;
    const candidates = deps.planner.candidates(shard, preference, req.maxReplicaLagMs);
    const result = await onFirstAnswering(candidates, ctx.signal, (pool) => executeStatement({
      shard: shard.name, pool, sql: req.sql, params, signal: ctx.signal, budget, isolated: analysis.isolated,
      login: ctx.caller?.loginFor(shard.name),
    }));
    return answer(result);
  }

  const scattered = await scatterGather(deps.planner.shards, {
    sql: analysis.multiShardSql, isolated: analysis.isolated, params,
    merge: analysis.merge ? mergeSpec(analysis.merge, req.params) : undefined, derivedMerge: true,
    allowPartial: false, readPreference: req.readPreference, maxReplicaLagMs: req.maxReplicaLagMs,
    signal: ctx.signal, budget, only: new Set(decision.shards), loginFor: ctx.caller?.loginFor,
  });
  return answer(scattered.result);
}

/** The keys a write pins, for the resharding fence; none pinned: it may touch any key. */
function fenceKeys(d: RoutingDecision): WriteKeys {
  if (d.keys.length === 0) return "all";
  return d.keys.flatMap((k) => k.values.filter((v): v is string => v !== null));
}

/** The shards' results of one atomic write as one: merged as a SELECT asks (… FOR UPDATE), else concatenated. */
function combine(results: ResultSet[], spec: ReturnType<typeof mergeSpec> | undefined): ResultSet {
  const [first] = results;
  if (!first) return create(ResultSetSchema, {});
  const merged = spec
    ? runMerge(planMerge(spec, first.columns, true), { columns: first.columns, parts: results.map((r) => r.rows) })
    : { columns: first.columns, rows: results.flatMap((r) => r.rows) };
  return create(ResultSetSchema, {
    columns: merged.columns, rows: merged.rows, command: first.command,
    rowsAffected: results.reduce((sum, r) => sum + r.rowsAffected, 0n),
  });
}
