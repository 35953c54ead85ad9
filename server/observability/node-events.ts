// Failover as an operator reads it: node down and back, promoted or demoted, fenced, a shard's
// writable node changing, circuit breakers opening and closing. Breakers report their own state
// changes (cockatiel events); health is what the health checker last wrote on each node, compared
// with what this watcher saw before, every health interval. Nothing here changes any state.
import { CircuitState } from "cockatiel";
import type { NodePool } from "../shards/node-pool.js";
import { type ShardNodes, type ShardSet, writerOf } from "../shards/shard-set.js";
import type { Logger } from "./logger.js";
import type { RouterMetrics } from "./metrics.js";

interface Seen { status: string; writable: boolean; fenced: boolean }

export interface NodeEvents { close(): void }

export function watchNodes(shards: ShardSet, logger: Logger, metrics: RouterMetrics, intervalMs: number): NodeEvents {
  const seen = new Map<NodePool, Seen>();
  /** The writer at the last look (undefined: none), and the last one there was. */
  const writers = new Map<ShardNodes, string | undefined>();
  const lastWriter = new Map<ShardNodes, string>();
  const snapshot = (n: NodePool): Seen => ({ status: n.health.status, writable: !n.health.inRecovery, fenced: n.health.fenced });
  const writerName = (s: ShardNodes) => { try { return writerOf(s).name; } catch { return undefined; } };
  const where = (s: ShardNodes, n: NodePool) => ({ shard: s.name, node: n.name, address: n.address });

  const subscriptions: { dispose(): void }[] = [];
  /** A shard first seen (at start, or registered while serving): its state now, and its breakers' events. */
  const adopt = (shard: ShardNodes, when: string) => {
    const writer = writerName(shard);
    writers.set(shard, writer);
    if (writer !== undefined) lastWriter.set(shard, writer);
    for (const node of shard.nodes) {
      const now = snapshot(node);
      seen.set(node, now);
      // A node down from the start is a warning, with the reason (a refused TLS certificate, say).
      if (now.status === "down") logger.warn({ ...where(shard, node), status: now.status, reason: node.health.failure }, when);
      else logger.info({ ...where(shard, node), status: now.status, role: now.writable ? "primary" : "replica", fenced: now.fenced, timeline: node.health.timeline }, when);
      subscriptions.push(node.breaker.onStateChange((state) => {
        if (state === CircuitState.Open || state === CircuitState.Isolated) logger.warn(where(shard, node), "circuit breaker opened: calls to the node fail fast");
        else if (state === CircuitState.HalfOpen) logger.info(where(shard, node), "circuit breaker half-open: probing the node");
        else logger.notice(where(shard, node), "circuit breaker closed");
      }));
    }
  };
  for (const shard of shards.shards) adopt(shard, "node state at start");

  const check = () => {
    for (const shard of shards.shards) {
      if (!writers.has(shard)) {
        adopt(shard, "node state when its shard was registered");
        continue;
      }
      for (const node of shard.nodes) {
        const was = seen.get(node)!;
        const now = snapshot(node);
        const at = where(shard, node);
        if (now.status !== was.status) {
          if (now.status === "down") logger.warn({ ...at, failedChecks: node.health.failedChecks, reason: node.health.failure }, "node down");
          else if (now.status === "up") logger.notice(at, "node up");
        }
        if (now.status === "up" && now.writable !== was.writable) {
          if (now.writable) logger.warn({ ...at, timeline: node.health.timeline }, "node is writable now (promoted)");
          else logger.warn(at, "node is a replica now");
        }
        if (now.fenced !== was.fenced) {
          if (now.fenced) logger.warn({ ...at, timeline: node.health.timeline, shardTimeline: shard.maxTimeline }, "node fenced: writable on an older timeline than its shard; it gets no statements");
          else logger.notice(at, "node no longer fenced");
        }
        seen.set(node, now);
      }
      const writer = writerName(shard);
      const before = writers.get(shard);
      if (writer === before) continue;
      writers.set(shard, writer);
      if (writer === undefined) {
        logger.warn({ shard: shard.name, previous: before }, "shard has no writable node");
        continue;
      }
      // Against the last writer there was, so down → (no writer) → promoted replica is one change.
      const last = lastWriter.get(shard);
      lastWriter.set(shard, writer);
      if (last !== undefined && last !== writer) {
        metrics.writerChanges.inc({ shard: shard.name });
        logger.warn({ shard: shard.name, writer, previous: last }, "shard writer changed");
      } else {
        logger.notice({ shard: shard.name, writer }, last === undefined ? "shard has a writable node" : "shard has its writable node again");
      }
    }
  };
  const timer = setInterval(check, intervalMs);
  timer.unref();

  return {
    close() {
      clearInterval(timer);
      for (const s of subscriptions) s.dispose();
    },
  };
}
