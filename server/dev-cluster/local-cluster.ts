// A local PostgreSQL cluster: one "catalog" server plus one server per shard, all on 127.0.0.1.
// Used by `npm start` (the dev cluster, persistent) and by tests (temp clusters).
//
// Layout under dataDir:
//   cluster.json              ports, password (0600), shard names — reused by the next start
//   <node>/data               the PostgreSQL data directory (LocalNode.dataDir), owned by the postgres OS user
//   <node>/postgres.log       that server's log (nodeLogFile(node))
//
// Signals: this module installs no signal handlers and never calls process.exit(); the caller owns
// Ctrl-C. Servers run in their own session (a terminal Ctrl-C does not reach them) and get SIGINT
// from the kernel if this process dies. See README.md in this folder.
import { mkdir, readdir, rm, stat, chmod, access } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { allNodes, loadState, saveState, shardName, newPassword, STATE_FILE, type ClusterState, type NodeState } from "./cluster-state.js";
import { createDataDirs } from "./initdb.js";
import { clearLeftoverServer } from "./leftover-server.js";
import { postgresOsUser, type RunAs } from "./pg-install.js";
import { isPortFree, pickFreePorts, reservePort } from "./ports.js";
import { PostgresServer } from "./postgres-server.js";

export interface LocalNode {
  name: string;          // e.g. "shard-0-primary", "catalog"
  host: string;          // "127.0.0.1"
  port: number;
  database: string;      // database to connect to ("shardrouter")
  user: string;          // "postgres"
  password: string;
  dataDir: string;       // the PostgreSQL data directory of this node
  role: "primary" | "replica";
}
export interface LocalShard { name: string; nodes: LocalNode[] }
export interface LocalClusterOptions {
  dataDir: string;            // everything lives under here
  shards: number;             // default 4
  fresh?: boolean;            // wipe dataDir first
  basePort?: number;          // catalog = basePort, shard i = basePort + 1 + i; otherwise free ports, remembered
  log?: (line: string) => void;  // progress lines; server logs go to <node>/postgres.log
  maxPreparedTransactions?: number; // default 64 (two-phase commit needs > 0)
  maxConnections?: number;    // default 100
}
export interface LocalCluster {
  shards: LocalShard[];
  catalog: LocalNode;
  stop(): Promise<void>;                 // clean stop of every postgres, idempotent
  stopNode(name: string, mode?: "fast" | "immediate"): Promise<void>;  // for fault tests
  startNode(name: string): Promise<void>;
}

const HOST = "127.0.0.1";
const USER = "postgres";
const DATABASE = "shardrouter";

/** Where a node's server log is. */
export function nodeLogFile(node: Pick<LocalNode, "dataDir">): string {
  return join(dirname(node.dataDir), "postgres.log");
}

export async function startLocalCluster(opts: LocalClusterOptions): Promise<LocalCluster> {
  const t0 = Date.now();
  const log = opts.log ?? (() => {});
  const shardCount = opts.shards ?? 4;
  const maxPreparedTransactions = opts.maxPreparedTransactions ?? 64;
  const maxConnections = opts.maxConnections ?? 100;
  if (!Number.isInteger(shardCount) || shardCount < 1) throw new Error(`shards must be a positive integer, got ${opts.shards}`);
  if (!Number.isInteger(maxPreparedTransactions) || maxPreparedTransactions < 0) throw new Error("maxPreparedTransactions must be an integer >= 0");
  if (!Number.isInteger(maxConnections) || maxConnections < 1) throw new Error("maxConnections must be a positive integer");

  const dataDir = resolve(opts.dataDir);
  const runAs = await postgresOsUser();
  const nodeData = (name: string) => join(dataDir, name, "data");

  if (opts.fresh) await wipe(dataDir, runAs, log);
  await mkdir(dataDir, { recursive: true }); // umask modes: a 0700 parent would lock postgres out
  await ensureReachable(dataDir, runAs);

  const state = withShards(await loadState(dataDir), shardCount, dataDir);
  await assignPorts(state, opts.basePort);
  await saveState(dataDir, state);
  const nodes = allNodes(state);

  // Leftovers of an earlier run first: their ports are ours, not "taken by something else".
  await Promise.all(nodes.map(async (n) => {
    if (await exists(nodeData(n.name))) await clearLeftoverServer(n.name, nodeData(n.name), runAs, log);
  }));
  // A remembered port now held by another program is an error, not a silent move: connection
  // settings people copied from cluster.json would otherwise point at that program.
  for (const n of nodes) {
    if (!(await isPortFree(n.port))) {
      throw new Error(`port ${n.port} of node ${n.name} (from ${join(dataDir, STATE_FILE)}) is in use by another process; ` +
        `free it, or start with fresh: true (new ports, data wiped) or another basePort`);
    }
  }

  const missing: string[] = [];
  for (const n of nodes) {
    await mkdir(join(dataDir, n.name), { recursive: true, mode: 0o755 });
    if (!(await exists(nodeData(n.name)))) missing.push(nodeData(n.name));
  }
  if (missing.length > 0) log(`creating ${missing.length} data dir(s) under ${dataDir}`);
  await createDataDirs(missing, { dataDir, user: state.user, password: state.password, database: state.database, runAs, log });

  const servers = new Map<string, PostgresServer>();
  for (const n of nodes) {
    servers.set(n.name, new PostgresServer({
      name: n.name,
      pgdata: nodeData(n.name),
      logFile: join(dataDir, n.name, "postgres.log"),
      port: n.port,
      maxConnections,
      maxPreparedTransactions,
      runAs,
      log,
    }));
  }
  const started = await Promise.allSettled([...servers.values()].map((s) => s.start()));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    await Promise.all([...servers.values()].map((s) => s.stop("fast")));
    throw failed.reason;
  }

  const toNode = (n: NodeState): LocalNode => ({
    name: n.name, host: HOST, port: n.port, database: state.database, user: state.user,
    password: state.password, dataDir: nodeData(n.name), role: n.role,
  });
  const cluster: LocalCluster = {
    catalog: toNode(state.catalog),
    shards: state.shards.map((s) => ({ name: s.name, nodes: s.nodes.map(toNode) })),
    async stop() {
      const running = [...servers.values()].filter((s) => s.running);
      await Promise.all(running.map((s) => s.stop("fast")));
      if (running.length > 0) log(`stopped ${running.length} postgres server(s) under ${dataDir}`);
    },
    async stopNode(name, mode = "fast") {
      await server(name).stop(mode);
    },
    async startNode(name) {
      await server(name).start();
    },
  };
  function server(name: string): PostgresServer {
    const s = servers.get(name);
    if (!s) throw new Error(`no node named ${name}; nodes: ${[...servers.keys()].join(", ")}`);
    return s;
  }

  log(`cluster ready in ${((Date.now() - t0) / 1000).toFixed(1)}s: ` +
    nodes.map((n) => `${n.name} ${HOST}:${n.port}`).join(", "));
  return cluster;
}

/** Fills in shards up to `count` (growing is fine; shrinking would silently orphan data). */
function withShards(state: ClusterState | undefined, count: number, dataDir: string): ClusterState {
  const s: ClusterState = state ?? {
    version: 1, user: USER, database: DATABASE, password: newPassword(),
    catalog: { name: "catalog", role: "primary", port: 0 },
    shards: [],
  };
  if (s.shards.length > count) {
    throw new Error(`${dataDir} holds ${s.shards.length} shards but ${count} were asked for; ` +
      `pass shards: ${s.shards.length}, or fresh: true to start over`);
  }
  for (let i = s.shards.length; i < count; i++) {
    s.shards.push({ name: shardName(i), nodes: [{ name: `${shardName(i)}-primary`, role: "primary", port: 0 }] });
  }
  return s;
}

async function assignPorts(state: ClusterState, basePort: number | undefined): Promise<void> {
  const nodes = allNodes(state);
  if (basePort !== undefined) {
    if (!Number.isInteger(basePort) || basePort < 1024 || basePort + nodes.length > 65535) {
      throw new Error(`basePort ${basePort} is out of range`);
    }
    state.catalog.port = basePort;
    state.shards.forEach((s, i) => s.nodes.forEach((n, j) => (n.port = basePort + 1 + i + j * state.shards.length)));
  }
  for (const n of nodes) if (n.port > 0) reservePort(n.port);
  const unassigned = nodes.filter((n) => !(n.port > 0));
  const ports = await pickFreePorts(unassigned.length);
  unassigned.forEach((n, i) => (n.port = ports[i]));
}

/** fresh: stop whatever still runs in the old data dirs, then empty dataDir (only if it is ours). */
async function wipe(dataDir: string, runAs: RunAs, log: (line: string) => void): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(dataDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  if (entries.length === 0) return;
  if (!entries.includes(STATE_FILE)) {
    throw new Error(`refusing to wipe ${dataDir}: it has no ${STATE_FILE}, so it is not a cluster made here`);
  }
  await Promise.all(entries.map(async (e) => {
    const pgdata = join(dataDir, e, "data");
    if (await exists(join(pgdata, "postmaster.pid"))) await clearLeftoverServer(e, pgdata, runAs, log);
  }));
  log(`wiping ${dataDir}`);
  await Promise.all(entries.map((e) => rm(join(dataDir, e), { recursive: true, force: true })));
}

/**
 * The postgres OS user must be able to walk down to its data dirs. We may open up dataDir itself
 * (o+x only: enter, not list — mkdtemp makes 0700 dirs); an ancestor we only report.
 */
async function ensureReachable(dataDir: string, runAs: RunAs): Promise<void> {
  if (runAs.uid === undefined) return;
  const st = await stat(dataDir);
  if ((st.mode & 0o001) === 0 && st.uid !== runAs.uid) await chmod(dataDir, (st.mode & 0o7777) | 0o001);
  for (let dir = dirname(dataDir); ; dir = dirname(dir)) {
    const d = await stat(dir);
    const bit = d.uid === runAs.uid ? 0o100 : d.gid === runAs.gid ? 0o010 : 0o001;
    if ((d.mode & bit) === 0) {
      throw new Error(`the ${runAs.name} OS user cannot reach ${dataDir}: ${dir} is not searchable by it ` +
        `(chmod o+x ${dir}, or choose another dataDir)`);
    }
    if (dir === dirname(dir)) break;
  }
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}
