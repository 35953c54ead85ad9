// A shard's primary dies under read load; reads that allow replicas keep working; writes fail fast
// until a replica is promoted (pg_promote), then succeed through the same router, no restart, no
// config change; the old primary, started again as a second writable node, is fenced off.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as assert from "uvu/assert";
import { ReadPreference, RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import { parseConfig } from "../../server/config/config.js";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { startRouter } from "../../server/router.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";
import { plainRows } from "../e2e/values.js";

let t: TestRouter;
const str = (value: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value } });

test.before(hook(async () => {
  t = await startTestRouter({ shards: 2, replicas: 1, health: { intervalMs: 100, timeoutMs: 500 }, breaker: { failureThreshold: 3, halfOpenAfterMs: 300 } });
  await seedDemoAccounts(t.router.planner);
}));
test.after(hook(async () => { await t?.stop(); }));

async function nodeInfo(name: string) {
  const topo = await t.connect.getTopology({});
  return topo.shards.flatMap((s) => s.nodes).find((n) => n.name === name)!;
}

test("primary killed, then a replica promoted, then the old primary back: reads, writes, fencing", async () => {
  const shard = t.cluster.shards[0];
  const [primary, replica] = shard.nodes;
  const key = await waitFor("an account on shard 0", async () => {
    for (let i = 0; i < 200; i++) if ((await t.connect.route({ key: `acct-${i}` })).shard === shard.name) return `acct-${i}`;
    return undefined;
  });
  const read = (readPreference: ReadPreference) =>
    t.connect.executeOnShard({ key, sql: "select balance from accounts where id = $1", params: [str(key)], readPreference }, { timeoutMs: 5000 });
  await waitFor("the replica to have the accounts", async () => (await read(ReadPreference.REPLICA).then(() => true, () => undefined)));
  assert.is((await nodeInfo(replica.name)).role, "replica");

  // Read load with both replica-allowing preferences while the primary dies.
  let stop = false;
  let killed = false;
  let reads = 0;
  const afterKill = { [ReadPreference.PRIMARY_PREFERRED]: 0, [ReadPreference.REPLICA_PREFERRED]: 0 } as Record<number, number>;
  const failures: ConnectError[] = [];
  const readers = Array.from({ length: 4 }, async (_, i) => {
    const preference = i % 2 ? ReadPreference.REPLICA_PREFERRED : ReadPreference.PRIMARY_PREFERRED;
    while (!stop) {
      try {
        await read(preference);
        reads++;
        if (killed) afterKill[preference]++;
      } catch (err) { failures.push(ConnectError.from(err)); }
    }
  });
  await waitFor("reads flowing", () => (reads > 20 ? true : undefined));
  await t.cluster.stopNode(primary.name, "immediate");
  killed = true;
  // Both preferences must keep answering, PRIMARY_PREFERRED included (it falls back to the replica).
  await waitFor("100 more reads of each preference after the kill", () =>
    (afterKill[ReadPreference.PRIMARY_PREFERRED] >= 100 && afterKill[ReadPreference.REPLICA_PREFERRED] >= 100 ? true : undefined), 30_000);
  stop = true;
  await Promise.all(readers);
  // Bound: a read already sent to the primary when it died may fail; every later one goes elsewhere.
  // None may hang: a read that waited for the dead primary until its deadline fails as DEADLINE_EXCEEDED.
  assert.ok(failures.length <= 4, `at most 4 failed reads during the switch, got ${failures.length}: ${failures.slice(0, 3).map((e) => e.rawMessage)}`);
  assert.equal(failures.filter((e) => e.code === Code.DeadlineExceeded).map((e) => e.rawMessage), [], "no read hung until its deadline");

  const write = () => t.connect.executeOnShard({ key, sql: "update accounts set balance = balance + 1 where id = $1 returning balance", params: [str(key)] }, { timeoutMs: 5000 });
  const refused = await write().then(() => undefined, (e) => ConnectError.from(e));
  assert.is(refused?.code, Code.Unavailable, "no writable node: writes fail fast and clearly");

  await t.cluster.promote(replica.name);
  const written = await waitFor("writes through the same router after the promotion", async () => {
    try { return await write(); } catch { return undefined; }
  }, 20_000);
  assert.is(written.result?.rows.length, 1);
  const promoted = await nodeInfo(replica.name);
  assert.is(promoted.role, "primary");
  assert.ok(promoted.timeline > 1, `a promotion starts a new timeline (${promoted.timeline})`);

  // The old primary comes back as it was: writable, on the old timeline. The router must fence it.
  await t.cluster.startNode(primary.name);
  await waitFor("the old primary to be seen and fenced", async () => {
    const old = await nodeInfo(primary.name);
    return old.status === "up" && old.fenced ? true : undefined;
  }, 20_000);
  const marker = `fence-${Date.now()}`;
  await t.connect.executeOnShard({ key, sql: "insert into accounts (id, balance) values ($1, 0)", params: [str(marker)] });
  const onPromoted = await t.direct(replica)`select count(*)::int as n from accounts where id = ${marker}`;
  const onOld = await t.direct(primary)`select count(*)::int as n from accounts where id = ${marker}`;
  assert.is(onPromoted[0].n, 1, "the write went to the promoted node");
  assert.is(onOld[0].n, 0, "nothing was written to the fenced old primary");
  const reads2 = await Promise.all(Array.from({ length: 10 }, () => read(ReadPreference.REPLICA_PREFERRED)));
  assert.ok(reads2.every((r) => plainRows(r.result).length === 1));

  // A row that exists only on the fenced old primary: no read, under any preference, may return it.
  const onlyOnOld = `fenced-only-${Date.now()}`;
  await t.direct(primary)`insert into accounts (id, balance) values (${onlyOnOld}, 7)`;
  let answered = 0;
  for (const readPreference of [ReadPreference.PRIMARY, ReadPreference.PRIMARY_PREFERRED, ReadPreference.REPLICA_PREFERRED, ReadPreference.REPLICA]) {
    for (let i = 0; i < 10; i++) {
      const res = await t.connect.executeOnShard({ key, sql: "select id from accounts where id = $1", params: [str(onlyOnOld)], readPreference }, { timeoutMs: 5000 })
        .catch((e) => ConnectError.from(e));
      if (res instanceof ConnectError) {
        // REPLICA: the only replica was promoted, and the fenced node is no replica: unavailable, never the row.
        assert.is(res.code, Code.Unavailable, `${ReadPreference[readPreference]}: ${res.rawMessage}`);
        continue;
      }
      answered++;
      assert.is(res.result?.rows.length, 0, `${ReadPreference[readPreference]} read the fenced node`);
    }
  }
  assert.ok(answered >= 30, `reads that allow the promoted primary answered (${answered})`);
});

test("two writable nodes on one timeline: writes are refused with UNAVAILABLE, not guessed", async () => {
  // One shard configured with two independent primaries (shard 1's and the catalog's), both on
  // timeline 1 (the second configured as a replica, as an operator would, while it is in fact a
  // primary): roles come from the nodes, and the router cannot know which one holds the truth.
  const node = (n: typeof t.config.shards[number]["nodes"][number] | NonNullable<typeof t.config.catalog>, name: string) =>
    ({ name, host: n.host, port: n.port, database: n.database, user: n.user, password: n.password });
  const config = parseConfig({
    listen: { host: "127.0.0.1", port: 0 },
    shards: [{ name: "twins", nodes: [node(t.config.shards[1].nodes[0], "twin-a"), { ...node(t.config.catalog!, "twin-b"), role: "replica" }] }],
  });
  const twin = await startRouter(config);
  try {
    const client = createClient(RouterService, createConnectTransport({ baseUrl: twin.url, httpVersion: "1.1" }));
    const err = await waitFor("writes refused for two writable nodes", async () => {
      const e = await client.executeOnShard({ key: "k", sql: "select 1" }).then(() => undefined, (x) => ConnectError.from(x));
      return e?.code === Code.Unavailable ? e : undefined;
    });
    assert.match(err.rawMessage, "2 writable nodes on the same timeline");
    for (const name of ["twin-a", "twin-b"]) assert.match(err.rawMessage, name);
  } finally {
    await twin.close();
  }
});

test.run();
