// Transfer rows, shared by `npm run bench` and `npm run bench:transfer`: the same debit/credit as one
// local transaction straight to a shard with postgres.js (the floor: no router), Transfer on one shard
// through the router (a local transaction plus its idempotency record), and Transfer across shards
// (two-phase commit, the decision in the catalog).
import type { ShardRouterClient } from "../sdk/src/index.js";
import type { BenchCluster } from "./bench-cluster.js";
import type { CpuProbe } from "./closed-loop.js";
import type { Rows } from "./rows.js";

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
