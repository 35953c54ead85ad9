// Doing a plan's faults to the running system, one after another, each at its point of the load.
// Each fault ends with the system whole again (node started, node resumed; the supervisor restarts a
// killed router by itself), so the checks after the load see a system that should have recovered.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import postgres from "postgres";
import type { LocalCluster, LocalNode } from "../../server/dev-cluster/local-cluster.js";
import { faultDuration, waitUntil, within } from "./bounded.js";
import { describeFault, type Fault } from "./plan.js";
import type { Progress } from "./progress.js";
import type { RouterSupervisor } from "./supervisor.js";

export interface FaultContext {
  cluster: LocalCluster;
  supervisor: RouterSupervisor;
  progress: Progress;
  /** Transfers the load will settle in all: a fault at 0.3 waits for 30 % of them. */
  totalTransfers: number;
  log: (line: string) => void;
  /** When the run began: the times logged are counted from it. */
  runStarted: number;
}

/** A fault step may take this long (a node's crash recovery and start included) before the run fails. */
const STEP_BOUND_MS = 180_000;

/** Runs the faults in order. Returns what went wrong doing them (not what they revealed: the checks do that). */
export async function runFaults(faults: Fault[], ctx: FaultContext): Promise<string[]> {
  const problems: string[] = [];
  const name = (i: number) => ctx.cluster.shards[i].name;
  for (const f of faults) {
    const what = describeFault(f, name);
    if (!(await ctx.progress.reach(Math.ceil(f.at * ctx.totalTransfers)))) {
      ctx.log(`  fault not reached (the load ended first): ${what}`);
      continue;
    }
    const t0 = Date.now();
    ctx.log(`  +${((t0 - ctx.runStarted) / 1000).toFixed(1)} s, ${ctx.progress.count} settled: ${what}`);
    try {
      await within(`fault "${what}" to finish`, STEP_BOUND_MS, doFault(f, ctx));
    } catch (err) {
      problems.push(`fault "${what}": ${(err as Error).message}`);
      ctx.log(`    failed: ${(err as Error).message}`);
    }
  }
  return problems;
}

async function doFault(f: Fault, ctx: FaultContext): Promise<void> {
  const { cluster } = ctx;
  switch (f.kind) {
    case "shard-kill": {
      const node = cluster.shards[f.shard].nodes[0];
      await sigkillPostmaster(node);
      await faultDuration(f.downMs);
      await startAgain(cluster, node);
      return;
    }
    case "shard-stop": {
      const node = cluster.shards[f.shard].nodes[0];
      await cluster.stopNode(node.name, "fast");
      await faultDuration(f.downMs);
      await startAgain(cluster, node);
      return;
    }
    case "pause": {
      const node = f.node === "catalog" ? cluster.catalog : cluster.shards[f.node].nodes[0];
      await cluster.pauseNode(node.name);
      try {
        await faultDuration(f.pauseMs);
      } finally {
        await cluster.resumeNode(node.name);
      }
      return;
    }
    case "router-kill": {
      await ctx.supervisor.serving(120_000); // the moment is taken on a serving router, not during a restart
      await faultDuration(f.jitterMs);
      const incarnation = ctx.supervisor.incarnations;
      const how = await ctx.supervisor.kill();
      ctx.log(`    router incarnation ${incarnation} ended: ${how}`);
      return;
    }
  }
}

/** kill -9 of the postmaster, as the OOM killer does; resolves once the process is gone. */
async function sigkillPostmaster(node: LocalNode): Promise<void> {
  const pid = Number((await readFile(join(node.dataDir, "postmaster.pid"), "utf8")).split("\n")[0]);
  if (!(pid > 0)) throw new Error(`${node.name}: no postmaster pid in postmaster.pid`);
  process.kill(pid, "SIGKILL");
  await waitUntil(`${node.name}'s postmaster (pid ${pid}) to die`, 10_000, async () => {
    try {
      process.kill(pid, 0);
      return `pid ${pid} still exists`;
    } catch {
      return true;
    }
  });
}

/**
 * Starts the node again. The cluster learns of a SIGKILLed postmaster from its exit event, so a start
 * issued right after may still find it "running" and do nothing: retried until the node answers.
 * (startNode itself clears what the dead postmaster left: orphaned backends, the stale pid file.)
 */
async function startAgain(cluster: LocalCluster, node: LocalNode): Promise<void> {
  await waitUntil(`${node.name} to run and accept connections again`, 150_000, async () => {
    await cluster.startNode(node.name);
    return (await acceptsConnections(node)) ? true : `${node.name} does not accept connections yet`;
  });
}

async function acceptsConnections(node: LocalNode): Promise<boolean> {
  const sql = postgres({ host: node.host, port: node.port, database: node.database, user: node.user, password: node.password, max: 1, connect_timeout: 5, onnotice: () => {} });
  try {
    await within(`select 1 on ${node.name}`, 10_000, sql`select 1`);
    return true;
  } catch {
    return false;
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}
