// Asks every node, on an interval and on its own connection, whether it is reachable, writable or in
// recovery, on which timeline, and how far its replay is behind. Then per shard: the highest timeline
// a writable node reported is remembered, and a writable node on a lower one is fenced (an old
// primary that came back after a promotion). Checks go through the node's circuit breaker: a node
// that fails or hangs repeatedly opens it, and a check is what probes it again when half-open.
import { isBrokenCircuitError } from "cockatiel";
import { tlsFailure } from "../config/postgres-tls.js";
import { parseLsn } from "./node-health.js";
import type { NodePool } from "./node-pool.js";
import { NodeUnreachableError } from "./node-unreachable.js";
import type { ShardNodes, ShardSet } from "./shard-set.js";

export interface HealthCheckOptions { intervalMs: number; timeoutMs: number }

const probeSql = `select pg_is_in_recovery() as in_recovery,
  (case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end)::text as lsn,
  case when pg_is_in_recovery() then 0
       else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end as timeline,
  coalesce(case when pg_is_in_recovery()
       then extract(epoch from now() - pg_last_xact_replay_timestamp()) * 1000 end, 0)::float8 as replay_age_ms`;

export class HealthChecker {
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> | undefined;

  constructor(private readonly shards: ShardSet, private readonly options: HealthCheckOptions) {}

  /** Checks every node now (the router serves with real roles from the start), then on the interval. */
  async start(): Promise<void> {
    await this.checkAll();
    this.timer = setInterval(() => void this.checkAll(), this.options.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.round;
  }

  /** One round over every node; overlapping callers share it. */
  checkAll(): Promise<void> {
    this.round ??= Promise.all(this.shards.shards.map((shard) => this.checkShard(shard))).then(() => undefined)
      .finally(() => (this.round = undefined));
    return this.round;
  }

  private async checkShard(shard: ShardNodes): Promise<void> {
    await Promise.all(shard.nodes.map((node) => this.checkNode(node)));
    resolveRoles(shard);
  }

  private async checkNode(node: NodePool): Promise<void> {
    try {
      const row = await node.breaker.execute(() => this.probe(node));
      Object.assign(node.health, {
        status: "up",
        inRecovery: row.in_recovery,
        lsn: parseLsn(row.lsn),
        timeline: Number(row.timeline),
        replayAgeMs: Number(row.replay_age_ms),
        failedChecks: 0,
        checkedAt: Date.now(),
      });
    } catch (err) {
      // Refused or lost: down now. Slow: down after two checks in a row, so one slow answer on a busy
      // machine does not take a primary out of service. An open breaker: down.
      const h = node.health;
      h.failedChecks++;
      const slow = err instanceof NodeUnreachableError && err.rawMessage.endsWith("timed out");
      if (!slow || h.failedChecks >= 2 || isBrokenCircuitError(err)) h.status = "down";
      if (err instanceof NodeUnreachableError) h.failure = err.rawMessage; // an open breaker keeps the cause it opened on
      h.checkedAt = Date.now();
    }
  }

  /** The probe query, bounded by the timeout: a hung (SIGSTOPped) node counts as a failure. */
  private probe(node: NodePool): Promise<{ in_recovery: boolean; lsn: string; timeline: number; replay_age_ms: number }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new NodeUnreachableError(`health check of ${node.name} timed out`, node.name)), this.options.timeoutMs);
    });
    const query = node.probe.unsafe(probeSql).then((rows) => rows[0] as never, (err) => {
      throw new NodeUnreachableError(`health check of ${node.name} failed: ${whyFailed(err)}`, node.name);
    });
    return Promise.race([query, timeout]).finally(() => clearTimeout(timer));
  }
}

/**
 * A failed probe's reason: TLS's own words (a refused certificate is a configuration problem an
 * operator must see), Postgres' message for a refused login (the probe's SQL has no parameters to
 * quote), else the error code.
 */
function whyFailed(err: unknown): string {
  const e = err as { name?: string; code?: string; message?: string };
  const tls = tlsFailure(err);
  if (tls) return `TLS failed: ${tls}`;
  if (e.name === "PostgresError") return `${e.message} (SQLSTATE ${e.code})`;
  return e.code ?? "error";
}

/** Fencing and lag, from what the shard's nodes just said. */
export function resolveRoles(shard: ShardNodes): void {
  const writable = shard.nodes.filter((n) => n.health.status === "up" && !n.health.inRecovery);
  for (const n of writable) shard.maxTimeline = Math.max(shard.maxTimeline, n.health.timeline);
  for (const n of shard.nodes) {
    if (n.health.status !== "up") continue; // keep what we knew until it answers again
    n.health.fenced = !n.health.inRecovery && n.health.timeline < shard.maxTimeline;
  }
  const primary = writable.find((n) => !n.health.fenced);
  for (const n of shard.nodes) {
    if (!n.health.inRecovery) { n.health.lagMs = 0; continue; }
    // Caught up with the primary's last position: no lag, however long ago the last commit was.
    const caughtUp = primary !== undefined && n.health.lsn >= primary.health.lsn;
    n.health.lagMs = caughtUp ? 0 : n.health.replayAgeMs;
  }
}
