// AdminService.AddShard: a shard whose server runs but that no router's config names is registered
// with one RPC. Every router (one in another process, started before; one started after) connects to
// it from the catalog, with its own shard login (nothing secret is stored or sent), and a reshard
// then gives it keys. Requests that could not be served are refused with the reason, and register
// nothing.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as assert from "uvu/assert";
import { AdminService, ReshardPhase } from "../../gen/shardrouter/v1/admin_pb.js";
import { RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import { parseConfig } from "../../server/config/config.js";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { devConfig } from "../../server/dev-cluster/dev-config.js";
import { startRouter } from "../../server/router.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { type RouterProcess, startRouterProcess } from "../harness/router-process.js";
import { hook, test } from "../harness/uvu.js";
import { scrape } from "../observability/scrape.js";

let t: TestRouter;
let other: RouterProcess | undefined;
let admin: ReturnType<typeof createClient<typeof AdminService>>;

test.before(hook(async () => {
  t = await startTestRouter({ shards: 3, unconfiguredShards: 1 });
  await seedDemoAccounts(t.router.planner);
  // The operator's part: the new shard's server has the sharded tables (schema is not copied).
  await t.direct(t.cluster.shards[2].nodes[0]).unsafe("create table accounts (id text primary key, balance bigint not null check (balance >= 0))");
  await t.direct(t.cluster.shards[2].nodes[0]).unsafe("grant all on accounts to " + t.cluster.routerRole.user);
  admin = createClient(AdminService, createConnectTransport({ baseUrl: t.router.url, httpVersion: "1.1" }));
  other = await startRouterProcess(t.cluster, { config: devConfig(t.cluster, { port: 0, unconfiguredShards: 1 }) as Record<string, unknown> });
}));
test.after(hook(async () => {
  await other?.kill("SIGKILL");
  await t?.stop();
}));

const failure = (p: Promise<unknown>) => p.then(() => { throw new Error("expected a failure"); }, (e) => ConnectError.from(e));

test("requests that cannot be served are refused with the reason, and register nothing", async () => {
  const node = t.cluster.shards[2].nodes[0];
  const at = { host: node.host, port: node.port, database: node.database };
  const noPrimary = await failure(admin.addShard({ name: "shard-2", nodes: [{ ...at, role: "replica" }] }));
  assert.is(noPrimary.code, Code.InvalidArgument);
  assert.match(noPrimary.rawMessage, 'exactly one node with role "primary"');
  assert.is((await failure(admin.addShard({ name: "shard-0", nodes: [{ ...at, role: "primary" }] }))).code, Code.AlreadyExists);
  assert.is((await failure(admin.addShard({ name: "bad name", nodes: [{ ...at, role: "primary" }] }))).code, Code.InvalidArgument);
  // Nothing listens there: the message names the node, never a password.
  const unreachable = await failure(admin.addShard({ name: "shard-9", nodes: [{ ...at, port: 1, role: "primary" }] }));
  assert.is(unreachable.code, Code.FailedPrecondition);
  assert.match(unreachable.rawMessage, `${node.host}:1`);
  assert.not.match(unreachable.rawMessage, t.cluster.routerRole.password);
  const topology = await t.connect.getTopology({});
  assert.equal(topology.shards.map((s) => s.name), ["shard-0", "shard-1"], "nothing was registered");
});

test("AddShard registers the shard; every router serves it; a reshard gives it keys", async () => {
  const node = t.cluster.shards[2].nodes[0];
  const added = await admin.addShard({ name: "shard-2", nodes: [{ host: node.host, port: node.port, database: node.database, role: "primary" }], weight: 2 });
  assert.is(added.shard?.name, "shard-2");
  assert.is(added.shard?.state, "spare");
  assert.equal(added.shard?.nodes.map((n) => n.name), ["shard-2-primary"]);
  assert.is((await failure(admin.addShard({ name: "shard-2", nodes: [{ host: node.host, port: node.port + 0, database: node.database, role: "primary", name: "again" }] }))).code, Code.AlreadyExists);

  // The router in the other process hears of it from the catalog.
  await waitFor("the other router to know shard-2", async () => {
    const topo = await other!.client.getTopology({});
    return topo.shards.some((s) => s.name === "shard-2" && s.state === "spare") ? true : undefined;
  });

  // Weight 0 in add_shards: the weight it was registered with.
  const job = (await admin.startReshard({ jobId: "onto_added", addShards: [{ name: "shard-2", weight: 0 }], autoCutover: true })).reshard!;
  assert.ok(job.moves.length > 0 && job.moves.every((m) => m.target === "shard-2"));
  await waitFor("the reshard to finish", async () => {
    const r = (await admin.getReshard({ jobId: "onto_added" })).reshard!;
    if (r.phase === ReshardPhase.FAILED) throw new Error(r.error);
    return r.phase === ReshardPhase.DONE ? true : undefined;
  }, 90_000);
  const topo = await t.connect.getTopology({});
  const shard2 = topo.shards.find((s) => s.name === "shard-2")!;
  assert.is(shard2.state, "active");
  assert.is(shard2.weight, 2);
  // With weight 2 of 4, about half the keyspace.
  assert.ok(Math.abs(shard2.ownership!.keyspaceFraction - 0.5) < 0.1, `owns ${shard2.ownership!.keyspaceFraction}`);

  // Its requests count under its name in this router's metrics, as a configured shard's do.
  const keyThere = (await t.direct(node)<{ id: string }[]>`select id from accounts limit 1`)[0].id;
  assert.is((await t.connect.executeOnShard({ key: keyThere, sql: "select 1" })).shard, "shard-2");
  const metrics = await scrape(t.router.url);
  assert.ok(metrics.samples.some((s) => s.name === "shardrouter_rpc_requests_total" && s.labels.rpc === "ExecuteOnShard" && s.labels.shard === "shard-2"), "shard-2 is a metrics label");
  const [{ n }] = await t.direct(node)<{ n: number }[]>`select count(*)::int as n from accounts`;
  assert.ok(n > 300, `shard-2 holds rows: ${n}`);
  const key = (await t.direct(node)<{ id: string }[]>`select id from accounts order by id limit 1`)[0].id;
  const read = "select balance from accounts where id = $1";
  const params = [{ kind: { case: "stringValue" as const, value: key } }];
  await waitFor("the other router to serve the new map", async () => ((await other!.client.route({ key })).shard === "shard-2" ? true : undefined));
  assert.is((await other!.client.executeOnShard({ key, sql: read, params })).result?.rows.length, 1, "the other router reads it on shard-2");

  // A router started now knows shard-2 from the catalog before it loads the map that names it.
  const later = await startRouter(parseConfig(devConfig(t.cluster, { port: 0, unconfiguredShards: 1 })));
  try {
    const client = createClient(RouterService, createConnectTransport({ baseUrl: later.url, httpVersion: "1.1" }));
    const route = await client.route({ key });
    assert.is(route.shard, "shard-2");
    assert.is(route.shardMapVersion, 2n);
    assert.is((await client.executeOnShard({ key, sql: read, params })).result?.rows.length, 1);
  } finally {
    await later.close();
  }
});

test.run();
