// Placement for a request: which shard owns a key (through the versioned shard map) and which node of
// it serves the statement. The RPC layer asks here; execution never computes placement itself.
import type { ReadPreference } from "../../gen/shardrouter/v1/router_pb.js";
import type { ShardMap } from "../placement/shard-map.js";
import type { Placement } from "../placement/strategy.js";
import type { NodePool } from "../shards/node-pool.js";
import type { ShardNodes, ShardSet } from "../shards/shard-set.js";

export interface Target { placement: Placement; shard: ShardNodes }

export class Planner {
  constructor(private shardMap: ShardMap, readonly shards: ShardSet) {}

  get map(): ShardMap {
    return this.shardMap;
  }

  /** Later resharding swaps the whole map at once; requests in flight keep the map they started with. */
  swapMap(next: ShardMap): void {
    this.shardMap = next;
  }

  /**
   * Where `key` lives under `map` (default: the map in force now). A request that routes several keys
   * passes the map it started with, so a switch in between never splits it over two versions.
   */
  async route(key: string, map: ShardMap = this.shardMap): Promise<Target> {
    const placement = await map.strategy.place(key);
    return { placement, shard: this.shards.shard(placement.shard) };
  }

  /** Nodes that may serve a statement under `preference`, best first (see ShardSet.candidates). */
  candidates(shard: ShardNodes, preference: ReadPreference, maxReplicaLagMs = 0): NodePool[] {
    return this.shards.candidates(shard, preference, maxReplicaLagMs);
  }
}
