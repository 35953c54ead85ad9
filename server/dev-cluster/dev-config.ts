// The router configuration for a local cluster: every shard's nodes and the catalog, as a plain
// config object that goes through the same validation as a config file. The router logs in as the
// cluster's router role (not a superuser), never as the nodes' admin user.
import type { LocalCluster, LocalNode } from "./local-cluster.js";

export interface DevConfigOptions {
  host?: string; port?: number; placement?: unknown; pool?: unknown; limits?: unknown; transactions?: unknown; health?: unknown; breaker?: unknown;
  /** Merged over the cluster's resharding settings (its admin login). */
  resharding?: Record<string, unknown>;
  /** The last N shards are spare: the router has their nodes, the shard map does not name them. */
  spareShards?: number;
  /** The last N shards are left out altogether (servers running, unknown to the router: for AddShard). */
  unconfiguredShards?: number;
  /** `ssl` of every node and the catalog (TLS to Postgres, see config/postgres-tls.ts). */
  ssl?: unknown;
  /** The tables section (default: accounts sharded by id). */
  tables?: unknown;
}

export function devConfig(cluster: LocalCluster, opts: DevConfigOptions = {}): unknown {
  const { user, password } = cluster.routerRole;
  const connection = (n: LocalNode) => ({ host: n.host, port: n.port, database: n.database, user, password, ...(opts.ssl ? { ssl: opts.ssl } : {}) });
  const configured = cluster.shards.slice(0, cluster.shards.length - (opts.unconfiguredShards ?? 0));
  return {
    listen: { host: opts.host ?? "127.0.0.1", port: opts.port ?? 8080 },
    ...(opts.placement ? { placement: opts.placement } : {}),
    ...(opts.pool ? { pool: opts.pool } : {}),
    ...(opts.limits ? { limits: opts.limits } : {}),
    ...(opts.transactions ? { transactions: opts.transactions } : {}),
    ...(opts.health ? { health: opts.health } : {}),
    ...(opts.breaker ? { breaker: opts.breaker } : {}),
    shards: configured.map((s, i) => ({
      name: s.name,
      ...(i >= configured.length - (opts.spareShards ?? 0) ? { spare: true } : {}),
      nodes: s.nodes.map((n) => ({ name: n.name, role: n.role, ...connection(n) })),
    })),
    catalog: connection(cluster.catalog),
    // The dev schema's accounts table, sharded by its id (what Explain reads statements against).
    tables: opts.tables ?? { sharded: { accounts: "id" } },
    // The resharder replicates and creates publications and triggers: the cluster's admin login,
    // which only the router's own statements use (never a caller's SQL).
    resharding: { user: cluster.catalog.user, password: cluster.catalog.password, ...opts.resharding },
  };
}
