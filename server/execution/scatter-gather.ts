// ExecuteOnAll: the same statement on every shard in parallel, then one merge. Without allow_partial
// the first failure cancels the other shards' statements and fails the request.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { PostgresErrorDetailSchema } from "../../gen/shardrouter/v1/errors_pb.js";
import type { MergeSpec, ReadPreference, ShardOutcome } from "../../gen/shardrouter/v1/router_pb.js";
import { ShardOutcomeSchema } from "../../gen/shardrouter/v1/router_pb.js";
import { type Column, type ResultSet, ResultSetSchema } from "../../gen/shardrouter/v1/value_pb.js";
import type { LoginFor, RawParam } from "../shards/node-pool.js";
import type { ShardSet } from "../shards/shard-set.js";
import { planMerge, runMerge } from "./merge/plan.js";
import { onFirstAnswering } from "./read-failover.js";
import { type Budget, executeStatement } from "./shard-executor.js";

export interface ScatterRequest {
  sql: string;
  /** Each shard's statement runs on a connection of its own (the statement guard's "isolated"). */
  isolated?: boolean;
  params: RawParam[];
  merge: MergeSpec | undefined;
  /** The merge was derived from the statement: averages go back where the SELECT list had them. */
  derivedMerge?: boolean;
  allowPartial: boolean;
  readPreference: ReadPreference;
  maxReplicaLagMs: number;
  signal: AbortSignal;
  budget: Budget;
  /**
   * Only these shards (default: every configured one). A read goes to the shards that own keys: a
   * shard receiving a reshard's copy holds rows its source still owns.
   */
  only?: ReadonlySet<string>;
  /** The caller's login on each shard (auth); default: the router's own. */
  loginFor?: LoginFor;
}

export interface ScatterResult { result: ResultSet; shards: ShardOutcome[] }

export async function scatterGather(shards: ShardSet, req: ScatterRequest): Promise<ScatterResult> {
  const siblings = new AbortController();
  const abort = () => siblings.abort(req.signal.reason);
  req.signal.addEventListener("abort", abort, { once: true });
  let firstError: ConnectError | undefined;
  try {
    const runs = shards.shards.filter((s) => !req.only || req.only.has(s.name)).map(async (shard) => {
      const started = performance.now();
      try {
        const candidates = shards.candidates(shard, req.readPreference, req.maxReplicaLagMs);
        const result = await onFirstAnswering(candidates, siblings.signal, (pool) => executeStatement({
          shard: shard.name, pool, sql: req.sql, params: req.params, signal: siblings.signal, budget: req.budget, isolated: req.isolated,
          login: req.loginFor?.(shard.name),
        }));
        return { shard: shard.name, elapsed: performance.now() - started, result };
      } catch (err) {
        const error = ConnectError.from(err);
        if (!req.allowPartial && !firstError) {
          firstError = error;
          siblings.abort(error); // nobody will read the other shards' rows
        }
        return { shard: shard.name, elapsed: performance.now() - started, error };
      }
    });
    const outcomes = await Promise.all(runs);
    if (firstError) throw firstError;
    const ok = outcomes.filter((o) => o.result);
    if (ok.length === 0) throw outcomes[0].error!;
    const columns = sameColumns(ok.map((o) => ({ shard: o.shard, columns: o.result!.columns })));
    const merged = runMerge(planMerge(req.merge, columns, req.derivedMerge), { columns, parts: ok.map((o) => o.result!.rows) });
    return {
      result: create(ResultSetSchema, {
        columns: merged.columns,
        rows: merged.rows,
        rowsAffected: ok.reduce((sum, o) => sum + o.result!.rowsAffected, 0n),
        command: ok[0].result!.command,
      }),
      shards: outcomes.map((o) => create(ShardOutcomeSchema, {
        shard: o.shard,
        rowCount: BigInt(o.result?.rows.length ?? 0),
        elapsedMs: o.elapsed,
        error: o.error ? {
          code: codeToString(o.error.code),
          message: o.error.rawMessage,
          sqlstate: sqlstateOf(o.error),
        } : undefined,
      })),
    };
  } finally {
    req.signal.removeEventListener("abort", abort);
  }
}

/** Every shard must return the same column names in the same order, or there is nothing to merge. */
function sameColumns(results: { shard: string; columns: Column[] }[]): Column[] {
  const [first, ...rest] = results;
  const names = first.columns.map((c) => c.name).join(", ");
  for (const r of rest) {
    const other = r.columns.map((c) => c.name).join(", ");
    if (other !== names) {
      throw new ConnectError(
        `shards returned different columns: ${first.shard} (${names}) vs ${r.shard} (${other}); are their schemas in sync?`,
        Code.FailedPrecondition,
      );
    }
  }
  return first.columns;
}

function sqlstateOf(error: ConnectError): string {
  return error.findDetails(PostgresErrorDetailSchema)[0]?.sqlstate ?? "";
}
