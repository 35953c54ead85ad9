// A local PostgreSQL cluster: one "catalog" server plus, per shard, a primary and `replicas`
// streaming replicas, all on 127.0.0.1. Used by `npm start` (the dev cluster, persistent) and by tests
// (temp clusters), which also inject faults: stop, kill, pause, promote.
//
// Roles: the router logs in as its own non-superuser role (ROUTER_ROLE, LocalCluster.routerRole;
// see router-role.ts); the `postgres` superuser (LocalNode.user) is for replication and admin connections.
//
// Layout under dataDir:
//   cluster.json              ports, passwords (0600), shards and their nodes — reused by the next start
//   <node>/data               the PostgreSQL data directory (LocalNode.dataDir), owned by the postgres OS user
//   <node>/postgres.log       that server's log (nodeLogFile(node))
//
// Signals: this module installs no signal handlers and never calls process.exit(); the caller owns
// Ctrl-C. Servers run in their own session (a terminal Ctrl-C does not reach them) and get SIGINT
// from the kernel if this process dies. See README.md in this folder.
import { mkdir, readdir, rm, stat, chmod, access } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { allNodes, loadState, saveState, shardName, replicaName, newPassword, STATE_FILE, type ClusterState, type NodeState } from "./cluster-state.js";
import { createDataDirs } from "./initdb.js";
import { clearLeftoverServer } from "./leftover-server.js";
import { nodeSql, withNodeSql } from "./node-sql.js";
import type postgres from "postgres";
import { postgresOsUser, type RunAs } from "./pg-install.js";
import { isPortFree, pickFreePorts, reservePort } from "./ports.js";
import { PostgresServer } from "./postgres-server.js";
import { ensureRouterRole, hasRouterRole, ROUTER_ROLE } from "./router-role.js";
import { waitFor } from "./wait.js";
import {
  cloneAsStandby, ensureSlots, isStandby, nodeServerSettings, pointAtPrimary, replicaServerSettings, shutDownCleanly,
  waitStreaming, writeStandbySignal,
} from "./replication.js";

export interface LocalNode {
  name: string;          // e.g. "shard-0-primary", "catalog"
  host: string;          // "127.0.0.1"
  port: number;
  database: string;      // database to connect to ("shardrouter")
  user: string;          // "postgres", the superuser: replication and admin connections (tests), never the router
  password: string;      // the superuser's
  dataDir: string;       // the PostgreSQL data directory of this node
  /**
   * The CONFIGURED (initial) role, from cluster.json. It does not change when promote() or a restart
   * changes what the node really is: whoever needs the actual role (the router) must ask the node
   * (`select pg_is_in_recovery()`).
   */
  role: "primary" | "replica";
}
/** A shard's nodes: the primary first, then `shard-N-replica-1`, `-2`, … */
export interface LocalShard { name: string; nodes: LocalNode[] }
export interface LocalClusterOptions {
  dataDir: string;            // everything lives under here
  shards: number;             // default 4
  /**
   * Streaming replicas per shard (0–8). Default: as many as dataDir already has (0 for a new cluster).
   * More than remembered: the new ones are cloned from their (stopped) primary before anything starts.
   * Fewer: an error.
   */
  replicas?: number;
  fresh?: boolean;            // wipe dataDir first
  basePort?: number;          // catalog = basePort, node j of shard i = basePort + 1 + i + j * shards; otherwise free ports, remembered
  log?: (line: string) => void;  // progress lines; server logs go to <node>/postgres.log
  maxPreparedTransactions?: number; // default 64 (two-phase commit needs > 0); replicas: never less than any earlier start used
  maxConnections?: number;    // default 100; replicas: never less than any earlier start used
  /**
   * More server settings for every node, over the cluster's own (tests: ssl=on, hba_file …). On the
   * command line, which anyone on the machine can read: paths, never secrets.
   */
  settings?: Record<string, string>;
}
export interface LocalCluster {
  shards: LocalShard[];
  catalog: LocalNode;
  /** The router's login (ROUTER_ROLE, not a superuser), the same on every node and the catalog. */
  routerRole: { user: string; password: string };
  stop(): Promise<void>;                 // clean stop of every postgres (paused ones too), idempotent
  // ---- fault injection (tests). Names are LocalNode.name; an unknown name rejects. ----
  /** Fast (clean) or immediate (crash-like: recovery at the next start) stop of one node. */
  stopNode(name: string, mode?: "fast" | "immediate"): Promise<void>;
  /**
   * Starts a stopped node's data dir as it is; never adds or removes standby.signal. So a configured
   * primary always comes back WRITABLE — after one of its replicas was promoted, that is a second
   * writable node in the shard (split brain), exactly as a real old primary that restarts. A replica
   * that was promoted stays writable too. Resolves when the node accepts connections.
   */
  startNode(name: string): Promise<void>;
  /** SIGSTOPs the node's postmaster and every backend: connections and queries hang (TCP still accepts). */
  pauseNode(name: string): Promise<void>;
  /** SIGCONTs what pauseNode stopped; a no-op for a node that is not paused. */
  resumeNode(name: string): Promise<void>;
  /**
   * Promotes a running replica (pg_promote): resolves once it is out of recovery and takes writes.
   * Rejects for a node that is not in recovery. Its configured primary is left alone (stop it first
   * for a clean failover, or keep it running for split brain).
   */
  promote(name: string): Promise<void>;
}

/** Replicas per shard at most: each takes one of the primary's max_wal_senders / max_replication_slots (10). */
export const MAX_REPLICAS = 8;
/** How long startLocalCluster waits for new or restarted replicas to stream before warning. */
const STREAMING_TIMEOUT_MS = 30_000;

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
  if (opts.replicas !== undefined && (!Number.isInteger(opts.replicas) || opts.replicas < 0 || opts.replicas > MAX_REPLICAS)) {
    throw new Error(`replicas must be an integer from 0 to ${MAX_REPLICAS}, got ${opts.replicas}`);
  }
  if (!Number.isInteger(maxPreparedTransactions) || maxPreparedTransactions < 0) throw new Error("maxPreparedTransactions must be an integer >= 0");
  if (!Number.isInteger(maxConnections) || maxConnections < 1) throw new Error("maxConnections must be a positive integer");

  const dataDir = resolve(opts.dataDir);
  const runAs = await postgresOsUser();
  const nodeData = (name: string) => join(dataDir, name, "data");

  if (opts.fresh) await wipe(dataDir, runAs, log);
  await mkdir(dataDir, { recursive: true }); // umask modes: a 0700 parent would lock postgres out
  await ensureReachable(dataDir, runAs);

  const state = withShards(await loadState(dataDir), shardCount, opts.replicas, dataDir);
  // A cluster.json from before the router had its own role has neither: made now, saved below.
  const routerRole = { user: (state.routerUser ??= ROUTER_ROLE), password: (state.routerPassword ??= newPassword()) };
  const before = state.replicaSettings;
  state.replicaSettings = {
    maxConnections: Math.max(before?.maxConnections ?? 0, maxConnections),
    maxPreparedTransactions: Math.max(before?.maxPreparedTransactions ?? 0, maxPreparedTransactions),
  };
  await assignPorts(state, opts.basePort);
  await saveState(dataDir, state);
  const nodes = allNodes(state);
  const primaries = [state.catalog, ...state.shards.map((s) => s.nodes[0])];
  const replicas = state.shards.flatMap((s) => s.nodes.slice(1).map((n) => ({ node: n, primary: s.nodes[0] })));

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

  // Missing data dirs. Primaries, the catalog, and replicas of a primary that is new too: copies of
  // one fresh initdb (replicas with standby.signal). A new replica of an existing primary: a copy of
  // that primary's data dir, made below while it is stopped.
  const had = new Set<string>();
  for (const n of nodes) {
    await mkdir(join(dataDir, n.name), { recursive: true, mode: 0o755 });
    if (await exists(nodeData(n.name))) had.add(n.name);
  }
  const fromTemplate = nodes.filter((n) => !had.has(n.name) && (n.role === "primary" || !had.has(primaryOf(n).name)));
  const toClone = replicas.filter((r) => !had.has(r.node.name) && had.has(r.primary.name));
  function primaryOf(n: NodeState): NodeState {
    return replicas.find((r) => r.node === n)!.primary;
  }
  const missing = fromTemplate.length + toClone.length;
  if (missing > 0) log(`creating ${missing} data dir(s) under ${dataDir}`);
  const standbyTargets = new Set(fromTemplate.filter((n) => n.role === "replica").map((n) => nodeData(n.name)));
  await createDataDirs(fromTemplate.map((n) => nodeData(n.name)), {
    dataDir, user: state.user, password: state.password, database: state.database, runAs, log,
    prepare: async (pgdata, target) => {
      if (standbyTargets.has(target)) await writeStandbySignal(pgdata, runAs);
    },
  });

  const servers = new Map<string, PostgresServer>();
  for (const n of nodes) {
    const replica = n.role === "replica";
    servers.set(n.name, new PostgresServer({
      name: n.name,
      pgdata: nodeData(n.name),
      logFile: join(dataDir, n.name, "postgres.log"),
      port: n.port,
      maxConnections: replica ? state.replicaSettings.maxConnections : maxConnections,
      maxPreparedTransactions: replica ? state.replicaSettings.maxPreparedTransactions : maxPreparedTransactions,
      settings: { ...nodeServerSettings, ...(replica ? replicaServerSettings : {}), ...opts.settings },
      runAs,
      log,
    }));
  }
  const stopAll = () => {
    for (const s of servers.values()) s.thaw();
    return Promise.all([...servers.values()].map((s) => s.stop("fast")));
  };
  try {
    // New replicas of existing primaries: a file copy is only consistent when the primary is not
    // running and shut down cleanly. Nothing runs yet; a primary that crashed (SIGKILL, immediate
    // stop) is started and stopped once first, which runs its crash recovery and a clean shutdown.
    for (const primary of new Set(toClone.map((r) => r.primary))) {
      const pgdata = nodeData(primary.name);
      if (!(await shutDownCleanly(pgdata))) {
        log(`${primary.name}: did not shut down cleanly; starting and stopping it once before cloning replicas`);
        await servers.get(primary.name)!.start();
        await servers.get(primary.name)!.stop("fast");
      }
      const names = toClone.filter((r) => r.primary === primary).map((r) => r.node.name);
      log(`cloning ${names.join(", ")} from ${primary.name}`);
      await Promise.all(names.map((name) => cloneAsStandby(pgdata, nodeData(name), runAs)));
    }

    // Which configured replicas are standbys (a promoted one has lost standby.signal and stays a
    // primary), and where their primary is now.
    const standbys: typeof replicas = [];
    for (const r of replicas) {
      if (await isStandby(nodeData(r.node.name))) {
        standbys.push(r);
        await pointAtPrimary(nodeData(r.node.name), { primaryPort: r.primary.port, user: state.user, password: state.password, replicaName: r.node.name }, runAs);
      } else {
        log(`${r.node.name}: configured as a replica of ${r.primary.name} but was promoted earlier (no standby.signal): ` +
          `it starts as a second writable primary; start with fresh: true to get a replica again`);
      }
    }

    // Primaries first, then their slots and the router's role, then replicas: a replica's first
    // connection then finds the primary up and its slot in place (a failed attempt would cost a retry interval).
    await startAll(primaries.map((n) => servers.get(n.name)!));
    // One admin connection per node that needs SQL: writable nodes (the router's role; on a shard
    // primary with standbys also its slots and the streaming check) and standbys (replay of the role).
    const sessions = new Map<string, postgres.Sql>();
    const session = (n: NodeState) => {
      if (!sessions.has(n.name)) sessions.set(n.name, nodeSql(address(n)));
      return sessions.get(n.name)!;
    };
    const shardsWithStandbys = state.shards
      .map((s) => ({ primary: s.nodes[0], standbys: standbys.filter((r) => r.primary === s.nodes[0]).map((r) => r.node) }))
      .filter((s) => s.standbys.length > 0);
    const verifiers = new Map<string, string>(); // primary name → the router's verifier it stores now
    const createdOn: string[] = [];
    const setUpRouterRole = async (n: NodeState) => {
      const outcome = await ensureRouterRole(session(n), { role: routerRole.user, password: routerRole.password, admin: state.user, database: state.database });
      verifiers.set(n.name, outcome.verifier);
      if (outcome.created) createdOn.push(n.name);
      if (outcome.adopted.length > 0) log(`${n.name}: ${routerRole.user} now owns what the router made as ${state.user}: ${outcome.adopted.join(", ")}`);
      for (const p of outcome.foreignPrepared) {
        log(`${n.name}: prepared transaction ${p.gid} belongs to ${p.owner}; only that role or a superuser can finish it, not the router ` +
          `(${routerRole.user}): COMMIT PREPARED or ROLLBACK PREPARED it as ${state.user}, as shardrouter.decisions on the catalog says`);
      }
    };
    try {
      const lost = (await Promise.all(shardsWithStandbys.map((s) =>
        ensureSlots(session(s.primary), s.primary.name, s.standbys.map((r) => r.name), log)))).flat();
      await Promise.all(primaries.map(setUpRouterRole));
      await startAll(replicas.map((r) => servers.get(r.node.name)!));
      // A replica promoted earlier is writable: it gets the role like a primary.
      await Promise.all(replicas.filter((r) => !standbys.includes(r)).map((r) => setUpRouterRole(r.node)));
      if (createdOn.length > 0) log(`created login role ${routerRole.user} for the router (not a superuser) on ${createdOn.sort().join(", ")}`);
      await Promise.all(shardsWithStandbys.map(async (s) => {
        const names = s.standbys.map((r) => r.name).filter((n) => !lost.includes(n));
        const lagging = await waitStreaming(session(s.primary), names, STREAMING_TIMEOUT_MS);
        for (const name of lagging) log(`${name}: not streaming from ${s.primary.name} after ${STREAMING_TIMEOUT_MS / 1000}s; see ${join(dataDir, name, "postgres.log")}`);
        // Streaming is not replayed: the router's first login to a replica must find its role there.
        const verifier = verifiers.get(s.primary.name)!;
        await Promise.all(s.standbys.filter((r) => names.includes(r.name) && !lagging.includes(r.name)).map(async (r) => {
          const replayed = await waitFor(() => hasRouterRole(session(r), routerRole.user, verifier).catch(() => false),
            STREAMING_TIMEOUT_MS, "the router's role on a replica", 10).then(() => true, () => false);
          if (!replayed) log(`${r.name}: has not replayed the router's role from ${s.primary.name} after ${STREAMING_TIMEOUT_MS / 1000}s; see ${join(dataDir, r.name, "postgres.log")}`);
        }));
      }));
    } finally {
      await Promise.all([...sessions.values()].map((sql) => sql.end({ timeout: 5 })));
    }
  } catch (err) {
    await stopAll();
    throw err;
  }

  function address(n: NodeState) {
    return { name: n.name, host: HOST, port: n.port, database: state.database, user: state.user, password: state.password };
  }
  const toNode = (n: NodeState): LocalNode => ({
    name: n.name, host: HOST, port: n.port, database: state.database, user: state.user,
    password: state.password, dataDir: nodeData(n.name), role: n.role,
  });
  const cluster: LocalCluster = {
    catalog: toNode(state.catalog),
    routerRole,
    shards: state.shards.map((s) => ({ name: s.name, nodes: s.nodes.map(toNode) })),
    async stop() {
      for (const s of servers.values()) s.thaw(); // a paused replica would hold up its primary's shutdown
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
    async pauseNode(name) {
      await server(name).pause();
      log(`${name}: paused (SIGSTOP)`);
    },
    async resumeNode(name) {
      const s = server(name);
      if (!s.paused) return;
      await s.resume();
      log(`${name}: resumed (SIGCONT)`);
    },
    async promote(name) {
      const s = server(name);
      if (!s.running) throw new Error(`${name} is not running; start it before promoting it`);
      if (s.paused) throw new Error(`${name} is paused; resume it before promoting it`);
      const n = nodes.find((x) => x.name === name)!;
      await withNodeSql(address(n), async (sql) => {
        const [{ inRecovery }] = await sql<{ inRecovery: boolean }[]>`select pg_is_in_recovery() as "inRecovery"`;
        if (!inRecovery) throw new Error(`${name} is not in recovery (not a replica, or promoted already): nothing to promote`);
        // wait => true: returns once recovery has ended, i.e. pg_is_in_recovery() is false and writes work.
        const [{ done }] = await sql<{ done: boolean }[]>`select pg_promote(true, 60) as done`;
        const [{ still }] = await sql<{ still: boolean }[]>`select pg_is_in_recovery() as still`;
        if (!done || still) throw new Error(`${name} did not finish promotion within 60 s; see ${join(dataDir, name, "postgres.log")}`);
      });
      log(`${name}: promoted; it takes writes now`);
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

/** Starts `list` in parallel; if one fails, the others it started are stopped again and it rejects. */
async function startAll(list: PostgresServer[]): Promise<void> {
  const started = await Promise.allSettled(list.map((s) => s.start()));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}

/**
 * Fills in shards up to `count` and each shard's replicas up to `replicas` (default: as many as any
 * shard has). Growing is fine; shrinking would silently orphan data.
 */
function withShards(state: ClusterState | undefined, count: number, replicas: number | undefined, dataDir: string): ClusterState {
  const s: ClusterState = state ?? {
    version: 1, user: USER, database: DATABASE, password: newPassword(), routerUser: ROUTER_ROLE, routerPassword: newPassword(),
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
  const had = Math.max(...s.shards.map((sh) => sh.nodes.length - 1));
  const want = replicas ?? had;
  if (had > want) {
    throw new Error(`${dataDir} holds ${had} replica(s) per shard but ${want} were asked for; ` +
      `pass replicas: ${had}, or fresh: true to start over`);
  }
  s.shards.forEach((sh, i) => {
    for (let k = sh.nodes.length; k <= want; k++) sh.nodes.push({ name: replicaName(i, k), role: "replica", port: 0 });
  });
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
