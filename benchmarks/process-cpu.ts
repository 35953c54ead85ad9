// CPU time of another process (the router), from /proc/<pid>/stat: utime + stime in clock ticks.
import { readFileSync } from "node:fs";

const ticksPerSecond = 100; // USER_HZ on Linux

export function processCpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1_000_000) / ticksPerSecond;
}
