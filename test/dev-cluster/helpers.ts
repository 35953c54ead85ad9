// Helpers shared by the dev-cluster tests: bounded polling, processes of a cluster dir (found
// independently of the code under test), one-off SQL, and temp dirs that are always cleaned up.
import { mkdtemp, readdir, readFile, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import * as assert from "uvu/assert";
import { type LocalCluster, type LocalClusterOptions, type LocalNode, startLocalCluster } from "../../server/dev-cluster/local-cluster.js";

/** Polls until `check` holds; fails after `timeoutMs`. */
export async function waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Pids of processes that belong to `dir`: cwd inside it (every postgres process chdirs into its
 * data dir) or `dir` on the command line (the postmaster's -D). Independent of the code under test.
 */
export async function processesUnder(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cwd = await readlink(`/proc/${entry}/cwd`).catch(() => "");
    const cmd = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (cwd.startsWith(dir + "/") || cmd.includes(dir + "/")) pids.push(Number(entry));
  }
  return pids;
}

/** Running and not a zombie (a daemonized postmaster is reparented to pid 1, which may not reap it). */
export async function alive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return stat !== "" && stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
}

export async function postmasterPid(node: LocalNode): Promise<number> {
  return Number((await readFile(join(node.dataDir, "postmaster.pid"), "utf8")).split("\n")[0]);
}

export function nodesOf(c: LocalCluster): LocalNode[] {
  return [c.catalog, ...c.shards.flatMap((s) => s.nodes)];
}

export async function withSql<T>(node: LocalNode, fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = connect(node);
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** A one-connection postgres.js pool to `node`; the caller ends it. */
export function connect(node: LocalNode, opts: { connect_timeout?: number } = {}): postgres.Sql {
  return postgres({ host: node.host, port: node.port, database: node.database, user: node.user, password: node.password, max: 1, onnotice: () => {}, ...opts });
}

/** A temp dir, clusters started in it, and a teardown that leaves nothing behind whatever happened. */
export async function inTempDir(fn: (dir: string, start: (o?: Partial<LocalClusterOptions>) => Promise<LocalCluster>, logs: string[]) => Promise<void>) {
  const dir = await mkdtemp(join(tmpdir(), "shardrouter-lc-test-"));
  const clusters: LocalCluster[] = [];
  const logs: string[] = [];
  const start = async (o: Partial<LocalClusterOptions> = {}) => {
    const c = await startLocalCluster({ dataDir: dir, shards: 2, log: (l) => logs.push(l), ...o });
    clusters.push(c);
    return c;
  };
  try {
    await fn(dir, start, logs);
  } finally {
    for (const c of clusters) await c.stop().catch(() => {});
    await scrub(dir);
  }
}

/** postgres.js results carry extra properties (count, command...); compare plain arrays. */
export function plain(rows: readonly (readonly unknown[])[]): unknown[][] {
  return Array.from(rows, (r) => Array.from(r));
}

export async function rejects(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await p;
  } catch (err) {
    assert.match((err as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected a rejection matching ${pattern}`);
}


/** Kills whatever still runs under `dir` and removes it: the last step of every teardown. */
export async function scrub(dir: string): Promise<void> {
  for (const pid of await processesUnder(dir)) { try { process.kill(pid, "SIGKILL"); } catch { /* gone */ } }
  await waitUntil("test processes to exit", async () => (await processesUnder(dir)).length === 0).catch(() => {});
  await rm(dir, { recursive: true, force: true });
}
