// What every benchmark here runs against: a temporary local cluster (4 shards + catalog, embedded
// PostgreSQL), the demo accounts (acct-0 … acct-999, each on the shard the router's placement picks),
// the compiled router in its own process (dist/, rebuilt first when a source changed), and long-lived
// postgres.js pools for the direct rows.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { parseConfig } from "../server/config/config.js";
import { seedDemoAccounts } from "../server/dev-cluster/demo-accounts.js";
import { devConfig } from "../server/dev-cluster/dev-config.js";
import { type LocalCluster, type LocalNode, startLocalCluster } from "../server/dev-cluster/local-cluster.js";
import { pickFreePorts } from "../server/dev-cluster/ports.js";
import { startRouter } from "../server/router.js";
import { type ServerProcess, spawnRouter } from "./router-process.js";

export interface BenchClusterOptions {
  shards?: number;
  /** More shards, configured but outside the shard map (a reshard can add them). */
  spareShards?: number;
  maxConnections?: number;
  /** Writes more data while the router's placement is at hand: `shardOf(key)` names a key's shard. */
  seed?: (cluster: LocalCluster, shardOf: (key: string) => Promise<string>) => Promise<void>;
  /** Run the router under `node --cpu-prof`, profiles into this folder. */
  profileDir?: string;
  log?: (line: string) => void;
}

export interface BenchCluster {
  cluster: LocalCluster;
  router: ServerProcess;
  /** The first shard: point selects and same-shard transfers use its accounts. */
  home: LocalCluster["shards"][number];
  homeKeys: string[];
  /** Accounts on every other shard. */
  otherKeys: string[];
  /** A long-lived postgres.js pool to a node (or another database on it); ended by stop(). */
  pool(node: LocalNode, options: postgres.Options<{}>): postgres.Sql;
  /** Postmaster pids of every node: their process trees are "postgres" in the CPU columns. */
  postmasterPids(): number[];
  stop(): Promise<void>;
}

export async function startBenchCluster(opts: BenchClusterOptions = {}): Promise<BenchCluster> {
  const log = opts.log ?? (() => {});
  // Everything started is undone in reverse order, also when starting fails halfway.
  const undo: (() => unknown)[] = [];
  const stop = async () => {
    for (const step of undo.splice(0).reverse()) await step();
  };
  try {
    const dataDir = mkdtempSync(join(tmpdir(), "shardrouter-bench-"));
    undo.push(() => rmSync(dataDir, { recursive: true, force: true }));
    log(`starting ${opts.shards ?? 4} shards + catalog in ${dataDir}`);
    const spareShards = opts.spareShards ?? 0;
    const cluster = await startLocalCluster({ dataDir, shards: (opts.shards ?? 4) + spareShards, maxConnections: opts.maxConnections ?? 300 });
    undo.push(() => cluster.stop());
    // Seed through an in-process router (the router's own placement), then serve from a separate process.
    const seeder = await startRouter(parseConfig(devConfig(cluster, { port: 0, spareShards })), { log: () => {} });
    const shardOf = async (key: string) => (await seeder.planner.route(key)).placement.shard;
    const home = cluster.shards[0];
    const homeKeys: string[] = [];
    const otherKeys: string[] = [];
    try {
      await seedDemoAccounts(seeder.planner);
      for (let i = 0; i < 1000; i++) {
        const key = `acct-${i}`;
        ((await shardOf(key)) === home.name ? homeKeys : otherKeys).push(key);
      }
      await opts.seed?.(cluster, shardOf);
    } finally {
      await seeder.close();
    }
    const [port] = await pickFreePorts(1);
    const config = devConfig(cluster, { port, transactions: {}, spareShards }) as { listen: { port: number } };
    const router = await spawnRouter(config, { profileDir: opts.profileDir, log });
    undo.push(() => router.stop());
    const pools: postgres.Sql[] = [];
    undo.push(() => Promise.all(pools.map((p) => p.end({ timeout: 5 }))));
    log(`router pid ${router.pid} serving on ${router.url}${opts.profileDir ? ` (CPU profile into ${opts.profileDir})` : ""}`);
    const nodes = [cluster.catalog, ...cluster.shards.flatMap((s) => s.nodes)];
    return {
      cluster, router, home, homeKeys, otherKeys,
      pool(node, options) {
        const sql = postgres({ host: node.host, port: node.port, database: node.database, user: node.user, password: node.password, onnotice: () => {}, ...options });
        pools.push(sql);
        return sql;
      },
      postmasterPids: () => nodes.map((n) => Number(readFileSync(join(n.dataDir, "postmaster.pid"), "utf8").split("\n", 1)[0])),
      stop,
    };
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
}
