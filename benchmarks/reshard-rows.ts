// The reshard group of `npm run bench`: the same write workload (single-row updates through the SDK,
// gRPC) with no reshard running, then while a job adds the spare shard (copy, stream, verify, fenced
// cutover, clean-up). Reports the copy rate and the largest lag seen, and for the writes: p50, p99 and
// max over the whole job and over the cutover window, and the longest any write waited.
import { createClient as connectClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AdminService, ReshardPhase } from "../gen/shardrouter/v1/admin_pb.js";
import { type ShardRouterClient, createClient } from "../sdk/src/node.ts";
import type { BenchCluster } from "./bench-cluster.js";
import type { Row, Rows } from "./rows.js";

interface Op { start: number; end: number; ok: boolean }

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `inFlight` workers updating random demo accounts until `stop.now`; every op with its start and end. */
async function writeLoad(client: ShardRouterClient, keys: string[], inFlight: number, stop: { now: boolean }): Promise<Op[]> {
  const ops: Op[] = [];
  await Promise.all(Array.from({ length: inFlight }, async (_, w) => {
    for (let i = w; !stop.now; i += inFlight) {
      const key = keys[(i * 7919) % keys.length];
      const start = performance.now();
      let ok = true;
      try {
        await client.onShard(key).query("update accounts set balance = balance + 1 where id = $1", [key]);
      } catch {
        ok = false;
      }
      ops.push({ start, end: performance.now(), ok });
    }
  }));
  return ops;
}

function stats(group: string, name: string, inFlight: number, ops: Op[], seconds: number, note?: string): Row {
  const ms = ops.filter((o) => o.ok).map((o) => o.end - o.start).sort((a, b) => a - b);
  const at = (q: number) => (ms.length ? ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] : 0);
  const max = ms.length ? ms[ms.length - 1] : 0;
  return {
    group, name, inFlight, ops: ms.length, errors: ops.length - ms.length, seconds, opsPerSec: ms.length / seconds,
    p50Ms: at(0.5), p99Ms: at(0.99), cpuUsPerOp: {}, note: `max ${max.toFixed(1)} ms${note ? `; ${note}` : ""}`,
  };
}

export async function measureReshard(rows: Rows, env: BenchCluster, spare: string, seconds: number, log: (line: string) => void): Promise<void> {
  const inFlight = 8;
  const client = createClient({ baseUrl: env.router.url, protocol: "grpc" });
  const admin = connectClient(AdminService, createGrpcTransport({ baseUrl: env.router.url }));
  const keys = [...env.homeKeys, ...env.otherKeys];
  try {
    // Without a reshard.
    let stop = { now: false };
    let load = writeLoad(client, keys, inFlight, stop);
    await sleep(seconds * 1000);
    stop.now = true;
    rows.add(stats("reshard", "writes, no reshard running", inFlight, await load, seconds));

    // With one: the phases are sampled every 10 ms to find the cutover window.
    stop = { now: false };
    load = writeLoad(client, keys, inFlight, stop);
    await sleep(500);
    const began = performance.now();
    const job = (await admin.startReshard({ jobId: `bench_${Date.now().toString(36)}`, addShards: [{ name: spare, weight: 1 }], autoCutover: true })).reshard!;
    let copiedAt: number | undefined;
    let cutStart: number | undefined;
    let cutEnd: number | undefined;
    let maxLag = 0n;
    let last = job;
    for (;;) {
      last = (await admin.getReshard({ jobId: job.jobId })).reshard!;
      const now = performance.now();
      if (last.phase !== ReshardPhase.COPYING && copiedAt === undefined) copiedAt = now;
      if (last.phase === ReshardPhase.CUTTING_OVER && cutStart === undefined) cutStart = now;
      if (cutStart !== undefined && last.phase !== ReshardPhase.CUTTING_OVER && cutEnd === undefined) cutEnd = now;
      for (const s of last.sources) if (s.lagBytes > maxLag) maxLag = s.lagBytes;
      if (last.phase === ReshardPhase.DONE || last.phase === ReshardPhase.FAILED) break;
      await sleep(10);
    }
    await sleep(500);
    stop.now = true;
    const ops = await load;
    const ended = performance.now();
    if (last.phase !== ReshardPhase.DONE) {
      rows.add({ group: "reshard", name: "reshard job", skipped: `the job failed: ${last.error}` });
      return;
    }
    const copied = Number(last.sources.reduce((n, s) => n + s.rowsCopied, 0n));
    const copySeconds = ((copiedAt ?? ended) - began) / 1000;
    const fenced = last.cutover?.fencedMs ?? 0;
    rows.add(stats("reshard", "writes while a job adds a shard (whole job)", inFlight, ops, (ended - began + 500) / 1000,
      `copy ${copied} rows in ${copySeconds.toFixed(2)} s (${(copied / copySeconds).toFixed(0)} rows/s, incl. slot and plan); largest lag seen ${maxLag} B`));
    // The cutover window as sampled, widened by the fence time reported by the job (the samples are 10 ms apart).
    const from = (cutStart ?? began) - 10;
    const to = Math.max(cutEnd ?? ended, from + fenced) + 10;
    const during = ops.filter((o) => o.end >= from && o.start <= to);
    rows.add(stats("reshard", "writes during the cutover window", inFlight, during, Math.max(0.001, (to - from) / 1000),
      `the fence held ${fenced.toFixed(1)} ms (acknowledged by ${last.cutover?.acknowledged.length ?? 0} router(s))`));
    log(`reshard: ${last.jobId} done, shard map v${last.fromVersion} → v${last.toVersion}`);
  } finally {
    client.close();
  }
}
