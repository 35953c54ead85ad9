// cluster.json: what a restart of the same dataDir must reuse — ports, the passwords, shard names,
// each shard's nodes (primary first, then its streaming replicas).
//
// It holds the passwords, so it is written 0600 and atomically (write + rename): a crash mid-write
// must not leave a cluster whose password nobody knows.
import { randomBytes } from "node:crypto";
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";

export const STATE_FILE = "cluster.json";

/** `role` is the configured (initial) role; a promoted replica keeps "replica" here. */
export interface NodeState { name: string; role: "primary" | "replica"; port: number }
export interface ClusterState {
  version: 1;
  /** The superuser (`postgres`): replication and admin connections only. */
  user: string;
  database: string;
  password: string;
  /**
   * The router's login role (not a superuser; see router-role.ts) and its password. Missing in a
   * cluster.json written before the router had its own role: filled in and saved at the next start.
   */
  routerUser?: string;
  routerPassword?: string;
  catalog: NodeState;
  shards: { name: string; nodes: NodeState[] }[];
  /**
   * The highest max_connections / max_prepared_transactions any start of this cluster used. A hot
   * standby refuses to run with less than its primary last had (the value travels in the WAL and in
   * pg_control), so replicas always start with these, never with a lower value of the current start.
   */
  replicaSettings?: { maxConnections: number; maxPreparedTransactions: number };
}

export function shardName(index: number): string {
  return `shard-${index}`;
}

/** Replica k (1-based) of shard i: "shard-0-replica-1". */
export function replicaName(shardIndex: number, k: number): string {
  return `${shardName(shardIndex)}-replica-${k}`;
}

/** Base64url: safe in connection URLs, pwfiles and conninfo strings without quoting. */
export function newPassword(): string {
  return randomBytes(24).toString("base64url");
}

export async function loadState(dataDir: string): Promise<ClusterState | undefined> {
  let text: string;
  try {
    text = await readFile(join(dataDir, STATE_FILE), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const state = JSON.parse(text) as ClusterState;
  if (state.version !== 1 || typeof state.password !== "string" || !state.catalog || !Array.isArray(state.shards)) {
    throw new Error(`${join(dataDir, STATE_FILE)} is not a shardrouter cluster file (start with fresh: true to recreate)`);
  }
  return state;
}

export async function saveState(dataDir: string, state: ClusterState): Promise<void> {
  const file = join(dataDir, STATE_FILE);
  await writeFile(`${file}.tmp`, JSON.stringify(state, null, 2) + "\n", { mode: 0o600 });
  await rename(`${file}.tmp`, file);
}

export function allNodes(state: ClusterState): NodeState[] {
  return [state.catalog, ...state.shards.flatMap((s) => s.nodes)];
}
