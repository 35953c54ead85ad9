// A short-lived SQL connection to one local node, for the few things that need SQL: replication
// slots, promotion, streaming checks. The password goes in the options, never into a URL, a log
// line or an error message.
import postgres from "postgres";

export interface NodeAddress { name: string; host: string; port: number; database: string; user: string; password: string }

/** A one-connection pool to `node` (connects on first use; the caller ends it). */
export function nodeSql(node: NodeAddress, connectTimeoutS = 10): postgres.Sql {
  return postgres({
    host: node.host, port: node.port, database: node.database, user: node.user, password: node.password,
    max: 1, connect_timeout: connectTimeoutS, onnotice: () => {}, connection: { application_name: "shardrouter-dev-cluster" },
  });
}

/** Runs `fn` on a one-connection pool to `node` and closes it; connecting gives up after `connectTimeoutS`. */
export async function withNodeSql<T>(node: NodeAddress, fn: (sql: postgres.Sql) => Promise<T>, connectTimeoutS = 10): Promise<T> {
  const sql = nodeSql(node, connectTimeoutS);
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}
