// The resharder's own connections to a node: never the router's pools (those carry callers' statements
// and their admission), always text cells (fetch_types: false), named so they show in pg_stat_activity.
import postgres from "postgres";
import { postgresSsl } from "../config/postgres-tls.js";
import type { NodeConfig } from "../shards/node-pool.js";

export interface NodeClientOptions {
  max?: number;
  connectTimeoutMs?: number;
  /** Startup parameters beyond application_name, e.g. `{ replication: "database" }`. */
  connection?: Record<string, string>;
}

export function nodeClient(node: NodeConfig, opts: NodeClientOptions = {}): postgres.Sql {
  return postgres({
    host: node.host, port: node.port, database: node.database, user: node.user, password: node.password, ssl: postgresSsl(node.ssl, node.host),
    max: opts.max ?? 1, idle_timeout: 0, max_lifetime: 0, fetch_types: false, onnotice: () => {},
    connect_timeout: Math.max(1, (opts.connectTimeoutMs ?? 5000) / 1000),
    connection: { application_name: "shardrouter-reshard", ...opts.connection } as never,
  });
}
