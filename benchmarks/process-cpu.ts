// CPU time of other processes (the router, Postgres, h2load) and of the whole machine, and a process's
// resident memory, from /proc.
// Clock ticks are USER_HZ (100 on Linux): 10 ms resolution, fine for runs of seconds.
import { readFileSync, readdirSync } from "node:fs";

const ticksPerSecond = 100; // USER_HZ on Linux
const usPerTick = 1_000_000 / ticksPerSecond;

/** Fields of /proc/<pid>/stat after the command name: [0] is field 3 (state), [1] field 4 (ppid) … */
function statFields(pid: number | "self"): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** utime + stime of a live process, µs. */
export function processCpuUs(pid: number): number {
  const f = statFields(pid);
  return (Number(f[11]) + Number(f[12])) * usPerTick;
}

/** CPU of a process's children that it has waited for (cutime + cstime), µs, from its stat text. */
export function waitedChildrenCpuUs(statText: string): number {
  const f = statText.slice(statText.lastIndexOf(")") + 2).trim().split(" ");
  return (Number(f[13]) + Number(f[14])) * usPerTick;
}

/**
 * CPU of a set of process trees (e.g. the postmasters of a local cluster and their backends), µs.
 * A backend that exits between two samples takes its CPU with it; long-lived pools keep them alive.
 */
export function treeCpuUs(rootPids: readonly number[]): number {
  let total = 0;
  forEachInTrees(rootPids, (_, f) => (total += (Number(f[11]) + Number(f[12])) * usPerTick));
  return total;
}

/** Calls `fn` for each root and each child of a root that is alive (its stat fields as statFields gives). */
function forEachInTrees(rootPids: readonly number[], fn: (pid: number, fields: string[]) => void): void {
  const roots = new Set(rootPids);
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    try {
      const f = statFields(pid);
      if (roots.has(pid) || roots.has(Number(f[1]))) fn(pid, f);
    } catch {
      // the process ended while we looked
    }
  }
}

/** Busy CPU time of the whole machine (every core, every process: ours and anyone else's), µs. */
export function machineBusyUs(): number {
  const [, ...ticks] = readFileSync("/proc/stat", "utf8").split("\n", 1)[0].trim().split(/\s+/).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = ticks; // idle and iowait are not busy
  return (user + nice + system + irq + softirq + steal) * usPerTick;
}

/**
 * Resident memory (VmRSS) of process trees as treeCpuUs counts them, and the sum of their peaks
 * (VmHWM), bytes. A child that ended takes its memory with it.
 */
export function treeRss(rootPids: readonly number[]): { rss: number; peak: number } {
  const sum = { rss: 0, peak: 0 };
  forEachInTrees(rootPids, (pid) => {
    try {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0) * 1024;
      sum.rss += kb("VmRSS");
      sum.peak += kb("VmHWM");
    } catch {
      // ended meanwhile
    }
  });
  return sum;
}
