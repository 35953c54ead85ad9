// Everything observability gives the composition root: the RPC interceptor, the GET /metrics
// answer for the HTTP/1.1 side of the listener, the observer the coordinator and recovery report
// to, and the failover watcher. router.ts wires these; nothing else imports this module.
import type * as http from "node:http";
import type { ContextValues, Interceptor } from "@connectrpc/connect";
import type { ShardSet } from "../shards/shard-set.js";
import type { TransactionObserver } from "../transactions/coordinator.js";
import type { InteractiveObserver } from "../transactions/interactive.js";
import type { RecoveryObserver } from "../transactions/recovery.js";
import type { PruneObserver } from "../transactions/request-pruning.js";
import { observeRpcs, type RpcObserver } from "./interceptor.js";
import type { Logger } from "./logger.js";
import { type MetricsSources, RouterMetrics } from "./metrics.js";
import { watchNodes } from "./node-events.js";
import { type RequestIds, requestIds } from "./request-id.js";
import { interactiveEvents, transactionEvents } from "./transaction-events.js";

export interface ObservabilityOptions {
  shards: ShardSet;
  logger: Logger;
  /** Read at scrape time. */
  inDoubt: () => number;
  /** How often node health is compared for failover events (the health check interval). */
  healthIntervalMs: number;
  /** Reshard jobs' slots, read at scrape time. */
  replicationSlots?: MetricsSources["replicationSlots"];
  /** Interactive transactions holding a connection, by shard, read at scrape time. */
  interactiveOpen?: MetricsSources["interactiveOpen"];
}

export interface Observability {
  readonly metrics: RouterMetrics;
  readonly interceptor: Interceptor;
  /** The same observations, for RPCs the unary fast path answers without connect-node. */
  readonly rpcs: RpcObserver;
  /** The request id withRequestIds gave a request. */
  readonly requestIdOf: RequestIds["idOf"];
  /** A request id from raw HTTP/2 stream headers (the caller's, or a fresh one). */
  readonly requestIdFrom: RequestIds["fromHeaders"];
  /** Wraps the Connect adapter: each request's id, echoed in the response's x-request-id header. */
  readonly withRequestIds: RequestIds["wrap"];
  /** connectNodeAdapter's `contextValues`: carries the request id to the interceptor. */
  readonly contextValues: (req: Parameters<RequestIds["contextValues"]>[0]) => ContextValues;
  readonly transactions: TransactionObserver & RecoveryObserver & PruneObserver;
  /** Told when an interactive transaction ends (metrics, logs). */
  readonly interactive: InteractiveObserver;
  /** Answers GET /metrics (true), or leaves the request to the RPC handler (false). */
  readonly http1: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
  /** Starts watching node health and breakers (after the first health check). */
  watchNodes(): void;
  close(): void;
}

export function observability({ shards, logger, inDoubt, healthIntervalMs, replicationSlots, interactiveOpen }: ObservabilityOptions): Observability {
  const metrics = new RouterMetrics({ shards, inDoubt, replicationSlots, interactiveOpen });
  const ids = requestIds();
  let nodes: { close(): void } | undefined;
  const rpcs = observeRpcs({ stats: metrics.rpc, logger, shards, newRequestId: ids.next });
  return {
    metrics,
    interceptor: rpcs.interceptor,
    rpcs,
    requestIdOf: ids.idOf,
    requestIdFrom: ids.fromHeaders,
    withRequestIds: ids.wrap,
    contextValues: ids.contextValues,
    transactions: transactionEvents(metrics, logger),
    interactive: interactiveEvents(metrics, logger),
    http1: (req, res) => {
      if (req.method !== "GET" && req.method !== "HEAD") return false;
      const url = req.url ?? "";
      if (url !== "/metrics" && !url.startsWith("/metrics?")) return false;
      metrics.scrape().then((body) => {
        res.writeHead(200, { "content-type": metrics.contentType, "cache-control": "no-store" });
        res.end(req.method === "HEAD" ? undefined : body);
      }, (err: unknown) => {
        logger.error({ err }, "metrics scrape failed");
        res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
        res.end("metrics scrape failed\n");
      });
      return true;
    },
    watchNodes() {
      nodes ??= watchNodes(shards, logger, metrics, healthIntervalMs);
    },
    close() {
      nodes?.close();
    },
  };
}
