// How a shard and its nodes are described to callers (GetTopology, Route, AddShard): live status,
// role as the node reports it, breaker, lag, pool use. Never an address with credentials.
import { create } from "@bufbuild/protobuf";
import { CircuitState } from "cockatiel";
import { type Node, NodeSchema } from "../../gen/shardrouter/v1/router_pb.js";
import type { NodePool } from "../shards/node-pool.js";
import { type ShardNodes, writerOf } from "../shards/shard-set.js";

/** "up" when the shard has a writer, "down" otherwise, "unknown" before any node was checked. */
export function shardStatus(shard: ShardNodes): string {
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

export function describeNodes(shard: ShardNodes): Node[] {
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
