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
import { checkStatement } from "../execution/statement-guard.js";
import { type EncodedParam, encodeParam } from "../execution/value-codec.js";
import type { NodePool } from "../shards/node-pool.js";
import type { ShardNodes } from "../shards/shard-set.js";
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

export function routerService({ planner, coordinator, recovery, config }: RouterServiceDeps): ServiceImpl<typeof RouterService> {
  const limits = config.limits;
  return {
    async route(req) {
      const { placement, shard } = await planner.route(req.key);
      return {
        shard: placement.shard,
        keyspaceId: placement.keyspaceId,
        strategy: planner.map.strategy.name,
        nodes: describeNodes(shard),
        shardMapVersion: BigInt(planner.map.version),
      };
    },

    async executeOnShard(req, ctx) {
      checkStatement(req.sql);
      const params = encodeParams(req.params);
      const { shard } = await planner.route(req.key);
      const result = await executeStatement({
        shard: shard.name, pool: planner.node(shard, req.readPreference), sql: req.sql, params,
        signal: ctx.signal, budget: newBudget(limits.maxRows, limits.maxBytes),
      });
      return { shard: shard.name, result };
    },

    async executeOnAll(req, ctx) {
      checkStatement(req.sql);
      return scatterGather(planner.shards, {
        sql: req.sql, params: encodeParams(req.params), merge: req.merge, allowPartial: req.allowPartial,
        readPreference: req.readPreference, signal: ctx.signal, budget: newBudget(limits.maxRows, limits.maxBytes),
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
        shards: planner.shards.shards.map((shard) => ({
          name: shard.name,
          status: shard.primary.status,
          nodes: describeNodes(shard),
          ownership: map.strategy.ownership(shard.name),
          weight: shard.weight,
        })),
        inDoubtTransactions: recovery.inDoubt,
      };
    },
  };
}

function encodeParams(values: Value[]): EncodedParam[] {
  return values.map((v, i) => encodeParam(v, i + 1));
}

function describeNodes(shard: ShardNodes): Node[] {
  return shard.nodes.map((n: NodePool) => create(NodeSchema, { name: n.name, address: n.address, role: n.role, status: n.status }));
}
