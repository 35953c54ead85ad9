// The router's Prometheus metrics, in a registry of its own (no global registry: two routers in one
// process keep separate numbers). Per-request numbers are recorded by the RPC interceptor (RpcStats);
// pool, breaker and node gauges and the in-doubt count are read from the live objects at scrape time
// (collect callbacks), so the hot path pays nothing for them.
//
// Label values are bounded and never secret: service and method names, configured shard and node
// names, Connect codes and a few fixed words. Never a key, SQL text, address or credential.
import { CircuitState } from "cockatiel";
import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";
import type { ShardSet } from "../shards/shard-set.js";
import type { TransactionOutcomeKind } from "../transactions/coordinator.js";
import { endReasons } from "../transactions/interactive.js";
import { RpcStats } from "./rpc-stats.js";

const transactionOutcomes: readonly TransactionOutcomeKind[] = ["committed_one_phase", "committed_two_phase", "rolled_back", "in_doubt"];

const breakerStates: Record<CircuitState, "closed" | "half_open" | "open"> = {
  [CircuitState.Closed]: "closed", [CircuitState.HalfOpen]: "half_open", [CircuitState.Open]: "open", [CircuitState.Isolated]: "open",
};

export interface MetricsSources {
  shards: ShardSet;
  /** Prepared transactions of our prefix that recovery left unresolved in its last round. */
  inDoubt: () => number;
  /** Reshard jobs' replication slots per shard (see resharding/slot-lag.ts), read at scrape time. */
  replicationSlots?: () => Promise<{ shard: string; name: string; lagBytes: bigint }[]>;
  /** Interactive transactions holding a connection now, by shard. */
  interactiveOpen?: () => Map<string, number>;
  /** Process metrics (CPU, memory, event loop lag, GC): default true. */
  processMetrics?: boolean;
}

export class RouterMetrics {
  readonly registry = new Registry();
  readonly rpc = new RpcStats();
  readonly transactions: Counter<"outcome">;
  readonly recovered: Counter<"shard" | "decision">;
  readonly writerChanges: Counter<"shard">;
  readonly requestsPruned: Counter<"shard">;
  readonly interactiveEnded: Counter<"reason">;
  readonly idsIssued: Counter;
  readonly idsClockBackwards: Counter<"outcome">;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    const nodes = sources.shards.shards.flatMap((shard) => shard.nodes.map((node) => ({ labels: { shard: shard.name, node: node.name }, node })));
    const nodeGauge = (name: string, help: string, value: (n: (typeof nodes)[number]["node"]) => number) =>
      new Gauge({
        name, help, labelNames: ["shard", "node"] as const, registers,
        collect() { for (const { labels, node } of nodes) this.set(labels, value(node)); },
      });

    this.rpc.register(this.registry);

    nodeGauge("shardrouter_pool_in_use", "Statements running on the node's pool (admitted by the router).", (n) => n.admission.inUse);
    nodeGauge("shardrouter_pool_waiting", "Statements waiting in the router's queue for a slot on the node.", (n) => n.admission.queued);
    nodeGauge("shardrouter_pool_max", "Slots of the node's pool (pool.max).", (n) => n.admission.max);
    nodeGauge("shardrouter_isolated_in_use", "Isolated statements or transactions running on connections of their own (closed after them).", (n) => n.isolation.inUse);
    nodeGauge("shardrouter_isolated_waiting", "Isolated statements waiting for one of pool.maxIsolated slots.", (n) => n.isolation.queued);
    new Gauge({
      name: "shardrouter_node_breaker_state", help: "The node's circuit breaker: 1 for its current state (closed, half_open, open), 0 for the others.",
      labelNames: ["shard", "node", "state"] as const, registers,
      collect() {
        for (const { labels, node } of nodes) {
          const now = breakerStates[node.breaker.state];
          for (const state of ["closed", "half_open", "open"] as const) this.set({ ...labels, state }, state === now ? 1 : 0);
        }
      },
    });
    nodeGauge("shardrouter_node_up", "1 when the node's last health check succeeded, 0 when it failed or none ran yet.", (n) => (n.health.status === "up" ? 1 : 0));
    nodeGauge("shardrouter_node_writable", "1 when the node says it is a primary (not in recovery), 0 for a replica.", (n) => (n.health.inRecovery ? 0 : 1));
    nodeGauge("shardrouter_node_fenced", "1 when the node is writable on an older timeline than its shard has seen (never used).", (n) => (n.health.fenced ? 1 : 0));
    nodeGauge("shardrouter_node_replication_lag_seconds", "How far a replica's replay is behind its primary (0 for a primary or a caught-up replica).", (n) => n.health.lagMs / 1000);
    nodeGauge("shardrouter_node_timeline", "The node's timeline as it last reported it (0: unknown).", (n) => n.health.timeline);

    this.transactions = new Counter({
      name: "shardrouter_transactions_total",
      help: "Transaction attempts by outcome: committed_one_phase, committed_two_phase, rolled_back (failed and rolled back, or never reached a commit), in_doubt (commit decision not recorded: left to recovery).",
      labelNames: ["outcome"] as const, registers,
    });
    for (const outcome of transactionOutcomes) this.transactions.inc({ outcome }, 0);
    this.recovered = new Counter({
      name: "shardrouter_recovery_resolved_total",
      help: "Prepared transactions settled by recovery on a shard, by decision (commit, abort).",
      labelNames: ["shard", "decision"] as const, registers,
    });
    for (const shard of sources.shards.shards) for (const decision of ["commit", "abort"]) this.recovered.inc({ shard: shard.name, decision }, 0);
    new Gauge({
      name: "shardrouter_transactions_in_doubt", help: "Prepared transactions of this router family left unresolved by the last recovery round.",
      registers, collect() { this.set(sources.inDoubt()); },
    });
    this.writerChanges = new Counter({
      name: "shardrouter_shard_writer_changes_total", help: "Times a shard's writable node changed to a different node (failover or switchover), as seen by this router.",
      labelNames: ["shard"] as const, registers,
    });
    for (const shard of sources.shards.shards) this.writerChanges.inc({ shard: shard.name }, 0);
    this.requestsPruned = new Counter({
      name: "shardrouter_requests_pruned_total", help: "Idempotency records this router deleted from a shard because they were older than transactions.requestRetentionMs.",
      labelNames: ["shard"] as const, registers,
    });
    for (const shard of sources.shards.shards) this.requestsPruned.inc({ shard: shard.name }, 0);

    const interactiveOpen = sources.interactiveOpen;
    new Gauge({
      name: "shardrouter_interactive_transactions_open",
      help: "Interactive transactions (BeginTransaction) holding a connection of the shard's primary, being rolled back included.",
      labelNames: ["shard"] as const, registers,
      collect() {
        const open = interactiveOpen?.() ?? new Map<string, number>();
        for (const shard of sources.shards.shards) this.set({ shard: shard.name }, open.get(shard.name) ?? 0);
      },
    });
    this.interactiveEnded = new Counter({
      name: "shardrouter_interactive_transactions_ended_total",
      help: "Interactive transactions ended, by reason: commit, rollback (asked by the caller), idle_timeout, lifetime (rolled back by the router), error (connection lost, a failed commit, a moved key), shutdown.",
      labelNames: ["reason"] as const, registers,
    });
    for (const reason of endReasons) this.interactiveEnded.inc({ reason }, 0);

    this.idsIssued = new Counter({ name: "shardrouter_ids_issued_total", help: "Global ids this router issued (NextIds).", registers });
    this.idsClockBackwards = new Counter({
      name: "shardrouter_ids_clock_backwards_total",
      help: "Times the clock read earlier than the last id's millisecond: waited out (within ids.maxClockBackwardsMs) or refused.",
      labelNames: ["outcome"] as const, registers,
    });
    for (const outcome of ["waited", "refused"]) this.idsClockBackwards.inc({ outcome }, 0);

    const slots = sources.replicationSlots;
    if (slots) {
      new Gauge({
        name: "shardrouter_replication_slot_lag_bytes",
        help: "WAL a reshard job's replication slot holds back on a shard's primary (written since the slot's confirmed position).",
        labelNames: ["shard", "slot"] as const, registers,
        async collect() {
          this.reset(); // a dropped slot disappears
          for (const s of await slots()) this.set({ shard: s.shard, slot: s.name }, Number(s.lagBytes));
        },
      });
    }

    if (sources.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The text exposition of every metric. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }
}
