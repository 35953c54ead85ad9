// Every shard's nodes and their pools, and which node serves what. The writer is the node that says
// it is writable (not in recovery), so a promotion is followed without a restart; a writable node on
// an older timeline than its shard has seen (an old primary back after a failover) is fenced: never
// written to, never read from, until an operator turns it into a replica.
import { Code, ConnectError } from "@connectrpc/connect";
import { CircuitState } from "cockatiel";
import { ReadPreference } from "../../gen/shardrouter/v1/router_pb.js";
import { type Config, passwordOf, type ShardConfig } from "../config/config.js";
import { NodePool } from "./node-pool.js";

export interface ShardNodes {
  readonly name: string;
  readonly weight: number;
  /** Configured order: the configured primary first. */
  readonly nodes: readonly NodePool[];
  /** The highest timeline any writable node of this shard has reported. */
  maxTimeline: number;
}

/** A shard as ShardSet builds it: from the config, or registered in the catalog (AddShard). */
export type ShardDefinition = Pick<ShardConfig, "name" | "weight" | "nodes">;

export class ShardSet {
  private readonly byName = new Map<string, ShardNodes>();
  private readonly definitions = new Map<string, ShardDefinition>();
  private nextReplica = 0;
  private epoch = 0;

  constructor(private readonly config: Pick<Config, "shards" | "pool"> & Partial<Pick<Config, "breaker">>) {
    for (const shard of config.shards) this.add(shard);
  }

  /** Opens pools for a shard's nodes (a shard registered while serving); false if the name is taken. */
  add(shard: ShardDefinition): boolean {
    if (this.byName.has(shard.name)) return false;
    const nodes = shard.nodes.map((n, i) => new NodePool({
      ...n,
      name: n.name ?? `${shard.name}-${n.role}${n.role === "replica" ? `-${i}` : ""}`,
      password: passwordOf(n),
    }, this.config.pool, this.config.breaker));
    nodes.sort((a, b) => (a.role === b.role ? 0 : a.role === "primary" ? -1 : 1));
    for (const node of nodes) node.setEpoch(this.epoch);
    this.byName.set(shard.name, { name: shard.name, weight: shard.weight, nodes, maxTimeline: 0 });
    this.definitions.set(shard.name, shard);
    return true;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** How a shard's nodes are reached, with the login of its config (or the shard login). */
  definition(name: string): ShardDefinition | undefined {
    return this.definitions.get(name);
  }

  get shards(): ShardNodes[] {
    return [...this.byName.values()];
  }

  shard(name: string): ShardNodes {
    const shard = this.byName.get(name);
    if (!shard) throw new ConnectError(`shard ${name} is not configured on this router`, Code.Internal);
    return shard;
  }

  writer(shard: ShardNodes): NodePool {
    return writerOf(shard);
  }

  /**
   * Nodes that may serve a statement, best first; later ones are for retrying a read when an earlier
   * node does not answer. PRIMARY (the default) gives only the writer: a statement that may write is
   * never retried elsewhere.
   */
  candidates(shard: ShardNodes, preference: ReadPreference, maxLagMs = 0): NodePool[] {
    const replicas = this.replicas(shard, maxLagMs);
    const writer = () => { try { return [this.writer(shard)]; } catch { return []; } };
    switch (preference) {
      case ReadPreference.UNSPECIFIED:
      case ReadPreference.PRIMARY:
        return [this.writer(shard)];
      case ReadPreference.PRIMARY_PREFERRED:
        return orElse([...writer(), ...replicas], shard, preference);
      case ReadPreference.REPLICA_PREFERRED:
        return orElse([...replicas, ...writer()], shard, preference);
      case ReadPreference.REPLICA:
        return orElse(replicas, shard, preference);
    }
    throw new ConnectError(`unknown read preference ${preference}`, Code.InvalidArgument);
  }

  /** Usable replicas, rotated so reads spread over them. */
  private replicas(shard: ShardNodes, maxLagMs: number): NodePool[] {
    const usable = shard.nodes.filter((n) =>
      n.health.inRecovery && n.health.status !== "down" && n.breaker.state !== CircuitState.Open &&
      (maxLagMs === 0 || n.health.lagMs <= maxLagMs));
    if (usable.length < 2) return usable;
    const start = this.nextReplica++ % usable.length;
    return [...usable.slice(start), ...usable.slice(0, start)];
  }

  /** Every pool's connections carry shard map `version` from now on (see NodePool.setEpoch). */
  setEpoch(version: number): void {
    this.epoch = version;
    for (const shard of this.byName.values()) for (const node of shard.nodes) node.setEpoch(version);
  }

  async close(): Promise<void> {
    await Promise.all(this.shards.flatMap((s) => s.nodes.map((n) => n.close())));
  }
}

/** The node that takes writes: exactly one writable, unfenced node that is not known to be down. */
export function writerOf(shard: ShardNodes): NodePool {
  const writable = shard.nodes.filter((n) => n.health.status !== "down" && !n.health.inRecovery && !n.health.fenced);
  if (writable.length === 1) return writable[0];
  if (writable.length === 0) {
    const states = shard.nodes.map((n) => `${n.name} ${n.health.status === "down" ? "down" : n.health.fenced ? "fenced" : "replica"}`);
    throw new ConnectError(`shard ${shard.name} has no writable primary right now (${states.join(", ")})`, Code.Unavailable);
  }
  throw new ConnectError(
    `shard ${shard.name} has ${writable.length} writable nodes on the same timeline (${writable.map((n) => n.name).join(", ")}): ` +
    "refusing to write until an operator resolves it", Code.Unavailable);
}

function orElse(nodes: NodePool[], shard: ShardNodes, preference: ReadPreference): NodePool[] {
  if (nodes.length) return nodes;
  const why = preference === ReadPreference.REPLICA ? "no replica that is up and within the lag bound" : "no node that is up";
  throw new ConnectError(`shard ${shard.name} has ${why} for this read`, Code.Unavailable);
}
