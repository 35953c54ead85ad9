// A transaction whose shard went down before the router noticed (no health check has run since):
// reserving its connection is the first thing to find the node gone. The caller gets UNAVAILABLE
// naming the shard, as for any statement on a lost node, never a bare INTERNAL (a resharding test
// saw one when a source restarted under Transfers); nothing is left held, and once the node is back
// the same request goes through.
import { Code } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { failure } from "../harness/failure.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;

test.before(hook(async () => {
  // Health checks far apart: the transaction, not a health check, meets the dead node first.
  t = await startTestRouter({ shards: 2, health: { intervalMs: 600_000, timeoutMs: 1000 }, breaker: { failureThreshold: 100, halfOpenAfterMs: 100 } });
  await seedDemoAccounts(t.router.planner);
}));
test.after(hook(async () => { await t?.stop(); }));

test("Transfer and ExecuteTransaction on a shard whose primary is gone: UNAVAILABLE naming the shard; the retry succeeds once it is back", async () => {
  const victim = t.cluster.shards[1];
  const shardOf = async (key: string) => (await t.connect.route({ key })).shard;
  const keys = Array.from({ length: 40 }, (_, i) => `acct-${i}`);
  const onVictim: string[] = [];
  const elsewhere: string[] = [];
  for (const k of keys) ((await shardOf(k)) === victim.name ? onVictim : elsewhere).push(k);
  assert.ok(onVictim.length >= 2 && elsewhere.length >= 1, "keys on both shards");

  await t.cluster.stopNode(victim.nodes[0].name, "immediate");
  const pool = t.router.planner.shards.shard(victim.name).nodes[0];
  try {
    const cases = [
      () => t.connect.transfer({ fromKey: elsewhere[0], toKey: onVictim[0], amount: 1n, requestId: "down-cross" }),
      () => t.connect.transfer({ fromKey: onVictim[0], toKey: onVictim[1], amount: 1n, requestId: "down-same" }),
      () => t.grpc.executeTransaction({
        requestId: "down-tx",
        statements: [{ key: onVictim[0], sql: "update accounts set balance = balance + 1 where id = $1", params: [{ kind: { case: "stringValue", value: onVictim[0] } }] }],
      }),
    ];
    for (const call of cases) {
      pool.status = "up"; // each case meets the dead node first, as if nothing had noticed yet
      const err = await failure(call());
      assert.is(err.code, Code.Unavailable, `${Code[err.code]}: ${err.rawMessage}`);
      assert.match(err.rawMessage, victim.name);
    }
    assert.is(pool.admission.inUse + pool.isolation.inUse, 0, "no connection slot held on the dead node");
  } finally {
    await t.cluster.startNode(victim.nodes[0].name);
    pool.status = "up"; // what the next health check would find
  }
  const done = await waitFor("the transfer to go through once the node is back", async () => {
    try {
      return await t.connect.transfer({ fromKey: elsewhere[0], toKey: onVictim[0], amount: 1n, requestId: "down-cross" });
    } catch (err) {
      if ((await failure(Promise.reject(err))).code !== Code.Unavailable) throw err;
      return undefined;
    }
  }, 20_000);
  assert.is(done.toShard, victim.name);
});

test.run();
