// Every shard's nodes and their pools, and the choice of node for a read preference.
import { Code, ConnectError } from "@connectrpc/connect";
import { ReadPreference } from "../../gen/shardrouter/v1/router_pb.js";
import { type Config, passwordOf } from "../config/config.js";
import { NodePool } from "./node-pool.js";

export interface ShardNodes {
  readonly name: string;
  readonly weight: number;
  readonly primary: NodePool;
  readonly replicas: readonly NodePool[];
  readonly nodes: readonly NodePool[];
}

export class ShardSet {
  private readonly byName = new Map<string, ShardNodes>();
  private nextReplica = 0;

  constructor(config: Pick<Config, "shards" | "pool">) {
    for (const shard of config.shards) {
      const nodes = shard.nodes.map((n, i) => new NodePool({
        ...n,
        name: n.name ?? `${shard.name}-${n.role}${n.role === "replica" ? `-${i}` : ""}`,
        password: passwordOf(n),
      }, config.pool));
      this.byName.set(shard.name, {
        name: shard.name,
        weight: shard.weight,
        primary: nodes.find((n) => n.role === "primary")!,
        replicas: nodes.filter((n) => n.role === "replica"),
        nodes,
      });
    }
  }

  get shards(): ShardNodes[] {
    return [...this.byName.values()];
  }

  shard(name: string): ShardNodes {
    const shard = this.byName.get(name);
    if (!shard) throw new ConnectError(`shard ${name} is not configured on this router`, Code.Internal);
    return shard;
  }

  /** The node that serves a statement on `shard` under `preference`. */
  pick(shard: ShardNodes, preference: ReadPreference): NodePool {
    switch (preference) {
      case ReadPreference.UNSPECIFIED:
      case ReadPreference.PRIMARY:
        return shard.primary;
      case ReadPreference.PRIMARY_PREFERRED:
        return shard.primary.status !== "down" ? shard.primary : (this.replica(shard) ?? shard.primary);
      case ReadPreference.REPLICA_PREFERRED:
        return this.replica(shard) ?? shard.primary;
      case ReadPreference.REPLICA: {
        const replica = this.replica(shard);
        if (!replica) throw new ConnectError(`shard ${shard.name} has no replica available for a REPLICA read`, Code.Unavailable);
        return replica;
      }
    }
    throw new ConnectError(`unknown read preference ${preference}`, Code.InvalidArgument);
  }

  /** Round-robin over replicas not known to be down. */
  private replica(shard: ShardNodes): NodePool | undefined {
    const candidates = shard.replicas.filter((r) => r.status !== "down");
    if (candidates.length === 0) return undefined;
    return candidates[this.nextReplica++ % candidates.length];
  }

  async close(): Promise<void> {
    await Promise.all(this.shards.flatMap((s) => s.nodes.map((n) => n.close())));
  }
}
