// Whether a node can be a new shard's primary (AdminService.AddShard), asked before any router
// connects to it for good: reachable with the router's login, writable, and set up for what the
// router will ask of it: prepared transactions (two-phase commit) and logical decoding (resharding).
// Problems are told as a person can act on them, naming the node by host:port, never a password.
import postgres from "postgres";
import { postgresSsl } from "../config/postgres-tls.js";
import type { NodeConfig } from "./node-pool.js";

/** The first reason the node cannot serve as a shard's primary, or undefined when it can. */
export async function unfitPrimary(node: NodeConfig, connectTimeoutMs: number): Promise<string | undefined> {
  const where = `${node.name} (${node.host}:${node.port}, database ${node.database})`;
  const sql = postgres({
    host: node.host, port: node.port, database: node.database, user: node.user, password: node.password, ssl: postgresSsl(node.ssl, node.host),
    max: 1, idle_timeout: 0, fetch_types: false, onnotice: () => {}, connect_timeout: Math.max(1, connectTimeoutMs / 1000),
    connection: { application_name: "shardrouter-probe" } as never,
  });
  try {
    const [s] = await sql<{ replica: boolean; wal_level: string; prepared: number }[]>`
      select pg_is_in_recovery() as replica, current_setting('wal_level') as wal_level,
             current_setting('max_prepared_transactions')::int as prepared`;
    if (s.replica) return `${where} is in recovery (a replica): give the shard's primary`;
    if (s.prepared === 0) return `${where} has max_prepared_transactions = 0: two-phase commit needs it above 0`;
    if (s.wal_level !== "logical") return `${where} has wal_level = ${s.wal_level}: resharding needs wal_level = logical`;
    return undefined;
  } catch (err) {
    const e = err as { name?: string; code?: string; message?: string };
    // Postgres' own message (e.g. password authentication failed for user "x") names no secret.
    const why = e.name === "PostgresError" ? `${e.message} (SQLSTATE ${e.code})` : (e.code ?? "no answer").toLowerCase().replace(/_/g, " ");
    return `cannot use ${where} with the router's shard login (user ${node.user}): ${why}`;
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}
