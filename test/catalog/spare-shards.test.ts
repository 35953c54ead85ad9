// Spare shards: configured (the router has their nodes and pools) but left out of the shard map it
// seeds, so they own no keys; the local cluster runs every node with wal_level=logical (resharding
// moves rows with logical replication).
import * as assert from "uvu/assert";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
test.before(hook(async () => {
  t = await startTestRouter({ shards: 3, spareShards: 1 });
  await seedDemoAccounts(t.router.planner);
}));
test.after(hook(async () => { await t?.stop(); }));

test("a spare shard is in the topology, owns no keys and holds no rows; the seeded map leaves it out", async () => {
  const topo = await t.connect.getTopology({});
  assert.equal(topo.shards.map((s) => [s.name, s.state]), [["shard-0", "active"], ["shard-1", "active"], ["shard-2", "spare"]]);
  assert.is(topo.shards[2].ownership?.keyspaceFraction, 0);
  assert.is(topo.shards[2].status, "up", "its nodes are reached and checked like any other");
  for (let i = 0; i < 300; i++) assert.is.not((await t.connect.route({ key: `acct-${i}` })).shard, "shard-2");
  const [{ n }] = await t.direct(t.cluster.shards[2].nodes[0])<{ n: number }[]>`select count(*)::int as n from accounts`;
  assert.is(n, 0, "no account was seeded onto it");
  const [row] = await t.direct(t.cluster.catalog)`select shards from shardrouter.shard_maps where version = 1`;
  assert.equal(row.shards.map((s: { name: string }) => s.name), ["shard-0", "shard-1"]);
});

test("every node runs with wal_level=logical", async () => {
  for (const node of [t.cluster.catalog, ...t.cluster.shards.flatMap((s) => s.nodes)]) {
    const [{ wal_level }] = await t.direct(node)`show wal_level`;
    assert.is(wal_level, "logical", node.name);
  }
});

test.run();
