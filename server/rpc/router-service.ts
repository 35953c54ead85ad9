// The RouterService handlers: validate, ask the planner where, hand the statement to execution.
// No handler touches a database or computes placement itself.
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { type Node, NodeSchema, RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import type { Config } from "../config/config.js";
import type { Planner } from "../execution/planner.js";
import { scatterGather } from "../execution/scatter-gather.js";
import { executeStatement, newBudget } from "../execution/shard-executor.js";
import { checkStatement } from "../sql/statement-guard.js";
import { type EncodedParam, encodeParam } from "../execution/value-codec.js";
import type { NodePool } from "../shards/node-pool.js";
import { type ShardNodes, writerOf } from "../shards/shard-set.js";
import { onFirstAnswering } from "../execution/read-failover.js";
import { CircuitState } from "cockatiel";
import type { Coordinator } from "../transactions/coordinator.js";
import { executeTransaction } from "../transactions/execute-transaction.js";
import type { Recovery } from "../transactions/recovery.js";
import { transfer } from "../transactions/transfer.js";

export interface RouterServiceDeps {
  planner: Planner;
  coordinator: Coordinator;
  recovery: Recovery;
  config: Pick<Config, "limits" | "transfer">;
}

/** All a handler reads of its call: the signal that ends it (deadline, caller gone). */
export interface CallContext { readonly signal: AbortSignal }

type Impl = ServiceImpl<typeof RouterService>;
/**
 * The handlers, callable by connect-node (as a ServiceImpl) and by the unary fast path
 * (unary-handler.ts), which has no HandlerContext to give: only a CallContext.
 */
export type RouterHandlers = { [K in keyof Impl]: (req: Parameters<Impl[K]>[0], ctx: CallContext) => ReturnType<Impl[K]> };

export function routerService({ planner, coordinator, recovery, config }: RouterServiceDeps): RouterHandlers {
  const limits = config.limits;
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

    async executeOnShard(req, ctx) {
      const isolated = checkStatement(req.sql) === "isolated";
      const params = encodeParams(req.params);
      const { shard } = await planner.route(req.key);
      const candidates = planner.candidates(shard, req.readPreference, req.maxReplicaLagMs);
      const result = await onFirstAnswering(candidates, ctx.signal, (pool) => executeStatement({
        shard: shard.name, pool, sql: req.sql, params, signal: ctx.signal, budget: newBudget(limits.maxRows, limits.maxBytes), isolated,
      }));
      return { shard: shard.name, result };
    },

    async executeOnAll(req, ctx) {
      const isolated = checkStatement(req.sql) === "isolated";
      return scatterGather(planner.shards, {
        sql: req.sql, isolated, params: encodeParams(req.params), merge: req.merge, allowPartial: req.allowPartial,
        readPreference: req.readPreference, maxReplicaLagMs: req.maxReplicaLagMs, signal: ctx.signal, budget: newBudget(limits.maxRows, limits.maxBytes),
      });
    },

    async transfer(req, ctx) {
      return transfer(req, { planner, coordinator, table: config.transfer }, ctx.signal);
    },

    async executeTransaction(req, ctx) {
      return executeTransaction(req, { planner, coordinator, limits }, ctx.signal);
    },

    async getTopology() {
      const map = planner.map;
      return {
        strategy: map.strategy.name,
        shardMapVersion: BigInt(map.version),
        shards: planner.shards.shards.map((shard) => {
          const inMap = map.shards.find((s) => s.name === shard.name);
          const state = map.states[shard.name] ?? "spare";
          return {
            name: shard.name,
            status: shardStatus(shard),
            nodes: describeNodes(shard),
            ownership: inMap ? map.strategy.ownership(shard.name) : { description: `owns no keys (${state})`, keyspaceFraction: 0 },
            weight: inMap?.weight ?? shard.weight,
            state,
          };
        }),
        inDoubtTransactions: recovery.inDoubt,
      };
    },
  };
}

function encodeParams(values: Value[]): EncodedParam[] {
  return values.map((v, i) => encodeParam(v, i + 1));
}

/** "up" when the shard has a writer, "down" otherwise, "unknown" before any node was checked. */
function shardStatus(shard: ShardNodes): string {
  if (shard.nodes.every((n) => n.health.status === "unknown")) return "unknown";
  try {
    return writerOf(shard).health.status === "down" ? "down" : "up";
  } catch {
    return "down";
  }
}

const breakerNames: Record<CircuitState, string> = {
  [CircuitState.Closed]: "closed", [CircuitState.Open]: "open", [CircuitState.HalfOpen]: "half_open", [CircuitState.Isolated]: "open",
};

function describeNodes(shard: ShardNodes): Node[] {
  return shard.nodes.map((n: NodePool) => create(NodeSchema, {
    name: n.name,
    address: n.address,
    role: n.health.inRecovery ? "replica" : "primary",
    configuredRole: n.role,
    status: n.health.status,
    breaker: breakerNames[n.breaker.state],
    lagMs: n.health.lagMs,
    fenced: n.health.fenced,
    timeline: n.health.timeline,
    poolInUse: n.admission.inUse,
    poolWaiting: n.admission.queued,
    poolMax: n.admission.max,
  }));
}
