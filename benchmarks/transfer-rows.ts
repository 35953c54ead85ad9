// Transfer rows, shared by `npm run bench` and `npm run bench:transfer`: the same debit/credit as one
// local transaction straight to a shard with postgres.js (the floor: no router), Transfer on one shard
// through the router (a local transaction plus its idempotency record), and Transfer across shards
// (two-phase commit; the home shard commits in one phase with the decision in its own transaction).
import type { ShardRouterClient } from "../sdk/src/index.ts";
import type { BenchCluster } from "./bench-cluster.js";
import type { CpuProbe } from "./closed-loop.js";
import type { Row, Rows } from "./rows.js";

export const transferGroup = "transfer";
export const transferRowNames = {
  direct: "local transaction, direct postgres.js (one shard)",
  sameShard: "Transfer, same shard (router: local transaction)",
  crossShard: "Transfer, cross shard (router: two-phase commit)",
} as const;

export async function measureTransfers(rows: Rows, env: BenchCluster, client: ShardRouterClient, router: CpuProbe, inFlight: number): Promise<void> {
  let rng = 7;
  const pick = <T>(xs: T[]) => xs[(rng = (rng * 1103515245 + 12345) % 2147483648) % xs.length];
  // Amount 1 in a random direction keeps balances near 1000 for any run length.
  const pair = (a: string[], b: string[]): [string, string] => {
    for (;;) {
      const x = pick(a), y = pick(b);
      if (x !== y) return rng % 2 ? [x, y] : [y, x];
    }
  };
  const { homeKeys, otherKeys } = env;
  const direct = env.pool(env.home.nodes[0], { max: inFlight });
  const names = transferRowNames;

  await rows.measure(transferGroup, names.direct, inFlight, () => {
    const [a, b] = pair(homeKeys, homeKeys);
    // Rows locked in key order, as the router does: opposite transfers queue instead of deadlocking.
    const steps: [string, number][] = a < b ? [[a, -1], [b, 1]] : [[b, 1], [a, -1]];
    return direct.begin(async (tx) => {
      for (const [id, delta] of steps) await tx`update accounts set balance = balance + ${delta} where id = ${id} returning balance`;
    });
  });
  await rows.measure(transferGroup, names.sameShard, inFlight, () => {
    const [a, b] = pair(homeKeys, homeKeys);
    return client.transfer(a, b, 1n);
  }, { vs: names.direct, proxy: router });
  await rows.measure(transferGroup, names.crossShard, inFlight, () => {
    const [a, b] = pair(homeKeys, otherKeys);
    return client.transfer(a, b, 1n);
  }, { vs: names.direct, proxy: router });
}

/** The transfer targets of issue 12, judged on a run's rows: met, missed, or n/a when a row is missing. */
export function transferTargets(all: readonly Row[]): { target: string; measured: string; met?: boolean }[] {
  const find = (name: string) => all.find((r) => r.group === transferGroup && r.name === name && !r.skipped);
  const [direct, same, cross] = [find(transferRowNames.direct), find(transferRowNames.sameShard), find(transferRowNames.crossShard)];
  const f = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(2));
  const judge = (target: string, label: string, value: number | undefined, ok: (v: number) => boolean, context = "") => ({
    target, measured: `${label} ${f(value)}${context}`, met: value === undefined || !Number.isFinite(value) ? undefined : ok(value),
  });
  const p99 = cross?.p99Ms !== undefined && direct?.p99Ms ? cross.p99Ms / direct.p99Ms : undefined;
  const perStatement = (r: Row | undefined, statements: number) => (r?.cpuUsPerOp?.proxy === undefined ? "–" : (r.cpuUsPerOp.proxy / statements).toFixed(0));
  return [
    judge("same-shard Transfer ≥ 0.9× the local transaction", "× direct local transaction", same?.opsRatio, (v) => v >= 0.9,
      `; (router CPU ${f(same?.cpuUsPerOp?.proxy)} µs/op, ${perStatement(same, 9)} µs per statement of 9)`),
    judge("cross-shard Transfer ≥ 0.5× the single-shard local transaction", "× direct local transaction", cross?.opsRatio, (v) => v >= 0.5,
      `; (× same-shard Transfer ${f(cross && same ? cross.opsPerSec! / same.opsPerSec! : undefined)}; router CPU ${f(cross?.cpuUsPerOp?.proxy)} µs/op, ${perStatement(cross, 15)} µs per statement of 15)`),
    judge("cross-shard Transfer p99 ≤ 3× the local transaction's p99", "p99 ×", p99, (v) => v <= 3),
  ];
}
