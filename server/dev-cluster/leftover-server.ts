// Recovering a data dir that an earlier run did not shut down cleanly.
//
// Two cases leave `postmaster.pid` behind:
//  - the postmaster is still alive (its Node parent was killed and nothing stopped it): stop it with
//    `pg_ctl stop -m fast` so the data is checkpointed, then start our own;
//  - the postmaster is dead (SIGKILL, OOM): its backends notice and exit on their own within
//    moments; wait for them (postgres refuses to start while they still hold the old shared memory),
//    then remove the stale lock file. Postgres would also ignore a lock whose pid is dead, but not
//    one whose pid was reused by an unrelated process.
// A process belongs to a data dir when its cwd is that dir: the postmaster and all its children
// chdir into the data directory. That is also how we tell a live postmaster from a reused pid.
// Those processes first get SIGCONT: a run killed while a node was paused (LocalCluster.pauseNode)
// leaves them stopped, and a stopped process acts on no other signal.
import { readdir, readFile, readlink, realpath, rm } from "node:fs/promises";
import { join } from "node:path";
import { pgBinaries, runTool, type RunAs } from "./pg-install.js";
import { waitFor } from "./wait.js";

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function cwdOf(pid: number): Promise<string | undefined> {
  try {
    return await readlink(`/proc/${pid}/cwd`);
  } catch {
    return undefined; // gone, a zombie, or not ours to inspect
  }
}

/** Pids of live processes whose working directory is `dir` (postgres processes of that data dir). */
export async function processesInDir(dir: string): Promise<number[]> {
  const real = await realpath(dir).catch(() => dir);
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid !== process.pid && (await cwdOf(pid)) === real) pids.push(pid);
  }
  return pids;
}

async function readPidFile(pgdata: string): Promise<number | undefined> {
  try {
    const text = await readFile(join(pgdata, "postmaster.pid"), "utf8");
    const pid = Number(text.split("\n")[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** Makes `pgdata` startable: no live postgres using it and no stale postmaster.pid. */
export async function clearLeftoverServer(name: string, pgdata: string, runAs: RunAs, log: (line: string) => void): Promise<void> {
  const pid = await readPidFile(pgdata);
  if (pid === undefined) return;
  const real = await realpath(pgdata);
  for (const p of await processesInDir(real)) {
    try { process.kill(p, "SIGCONT"); } catch { /* gone */ }
  }

  if (pid > 0 && isAlive(pid) && (await cwdOf(pid)) === real) {
    log(`${name}: stopping leftover postgres (pid ${pid}) from an earlier run`);
    const bin = await pgBinaries();
    // pg_ctl can fail if the server exits on its own meanwhile; what matters is the outcome below.
    // A postmaster that already removed its pid file is in its last moments of exiting: let the wait below see it go.
    await runTool(bin.pg_ctl, ["stop", "-D", pgdata, "-m", "fast", "-w", "-t", "60"], runAs).catch(async (err) => {
      if (isAlive(pid) && (await readPidFile(pgdata)) !== undefined) throw err;
    });
    await waitFor(async () => !isAlive(pid) || (await cwdOf(pid)) !== real, 60_000, `leftover postgres pid ${pid} of ${name} to exit`);
    return;
  }

  // The postmaster is gone: let its orphaned children exit, then drop the lock file.
  const orphans = await processesInDir(real);
  if (orphans.length > 0) {
    log(`${name}: waiting for ${orphans.length} orphaned postgres process(es) of a dead postmaster`);
    const gone = await waitFor(async () => (await processesInDir(real)).length === 0, 10_000).then(() => true, () => false);
    if (!gone) {
      for (const p of await processesInDir(real)) {
        try { process.kill(p, "SIGKILL"); } catch { /* already gone */ }
      }
      await waitFor(async () => (await processesInDir(real)).length === 0, 5_000, `orphaned postgres processes of ${name} to exit`);
    }
  }
  log(`${name}: removing stale postmaster.pid (pid ${pid} is not running)`);
  await rm(join(pgdata, "postmaster.pid"), { force: true });
}
