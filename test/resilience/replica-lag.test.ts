// max_replica_lag_ms: a replica whose replay is behind by more than the bound is not used. REPLICA
// reads then fail clearly, REPLICA_PREFERRED reads fall back to the primary; once the replica catches
// up it serves again. The lag is what GetTopology shows.
import { Code, ConnectError } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import { ReadPreference } from "../../gen/shardrouter/v1/router_pb.js";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";
import { plainRows } from "../e2e/values.js";

let t: TestRouter;
const str = (value: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value } });
test.before(hook(async () => {
  t = await startTestRouter({ shards: 1, replicas: 1, health: { intervalMs: 100, timeoutMs: 1000 } });
  await t.connect.executeOnShard({ key: "k", sql: "create table marks (id text primary key)" });
}));
test.after(hook(async () => { await t?.stop(); }));

const replicaLag = async () => (await t.connect.getTopology({})).shards[0].nodes.find((n) => n.role === "replica")?.lagMs;
const hasMark = (id: string, readPreference: ReadPreference, maxReplicaLagMs = 0) =>
  t.connect.executeOnShard({ key: "k", sql: "select count(*)::int as n from marks where id = $1", params: [str(id)], readPreference, maxReplicaLagMs })
    .then((r) => (plainRows(r.result)[0][0] as bigint) === 1n);

test("a lagging replica is skipped under a lag bound and used again once caught up", async () => {
  const replica = t.direct(t.cluster.shards[0].nodes[1]);
  await waitFor("the replica to be caught up", async () => ((await replicaLag()) === 0 ? true : undefined));
  await replica`select pg_wal_replay_pause()`;
  try {
    await t.connect.executeOnShard({ key: "k", sql: "insert into marks values ('after-pause')" });
    await waitFor("the router to see the replica lagging", async () => (((await replicaLag()) ?? 0) > 300 ? true : undefined));

    assert.is(await hasMark("after-pause", ReadPreference.REPLICA), false, "no bound: the stale replica answers");
    const bounded = await hasMark("after-pause", ReadPreference.REPLICA, 200).then(() => undefined, (e) => ConnectError.from(e));
    assert.is(bounded?.code, Code.Unavailable);
    assert.match(bounded!.rawMessage, "lag bound");
    assert.is(await hasMark("after-pause", ReadPreference.REPLICA_PREFERRED, 200), true, "falls back to the primary");
  } finally {
    await replica`select pg_wal_replay_resume()`;
  }
  await waitFor("the replica to catch up", async () => ((await replicaLag()) === 0 ? true : undefined));
  assert.is(await hasMark("after-pause", ReadPreference.REPLICA, 200), true);
});

test.run();
