// The fenced cutover (server/resharding/cutover.ts) across three routers: two serving clients that
// run Transfers and inserts throughout, and one cut off from the catalog (through a proxy we cut).
// A third shard is added to a two-shard ring: the job copies and streams, then the cutover holds
// writes to moving keys on the routers that acknowledge, fences the sources in the database,
// waits for the streams and commits version 2. Afterwards every account is exactly once on the
// shard Route names, the money is all there, and the cut-off router's write to a moved key is
// refused by the source itself.
import { createServer, type Server, type Socket, connect as netConnect } from "node:net";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import postgres from "postgres";
import * as assert from "uvu/assert";
import { RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import { Catalog } from "../../server/catalog/catalog.js";
import { FenceStore } from "../../server/catalog/fence-store.js";
import { ShardMapStore } from "../../server/catalog/shard-map-store.js";
import { parseConfig } from "../../server/config/config.js";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import type { LocalNode } from "../../server/dev-cluster/local-cluster.js";
import { buildShardMap } from "../../server/placement/shard-map.js";
import { ReshardJob } from "../../server/resharding/reshard-job.js";
import { type RunningRouter, startRouter } from "../../server/router.js";
import type { NodeConfig } from "../../server/shards/node-pool.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
let second: RunningRouter;
let cutOff: RunningRouter;
let proxy: Server;
let proxyPort: number;
const proxied = new Set<Socket>();

/** A TCP proxy to the catalog: closing it and its sockets cuts a router off from the catalog. */
async function catalogProxy(port: number): Promise<Server> {
  const c = t.config.catalog!;
  const server = createServer((client) => {
    const upstream = netConnect(c.port, c.host);
    proxied.add(client).add(upstream);
    client.pipe(upstream).pipe(client);
    const drop = () => { client.destroy(); upstream.destroy(); };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return server;
}
let catalog: Catalog;
const asConfig = (n: LocalNode): NodeConfig => ({ name: n.name, host: n.host, port: n.port, database: n.database, user: n.user, password: n.password, role: "primary" });

test.before(hook(async () => {
  t = await startTestRouter({ shards: 3, spareShards: 1, transactions: { routerId: "one" } });
  await seedDemoAccounts(t.router.planner);
  second = await startRouter(parseConfig({ ...(t.config as object), listen: { host: "127.0.0.1", port: 0 }, transactions: { ...t.config.transactions, routerId: "two" } }));
  // The third router reaches the catalog only through this proxy.
  const c = t.config.catalog!;
  proxy = await catalogProxy(0);
  proxyPort = (proxy.address() as { port: number }).port;
  const port = proxyPort;
  cutOff = await startRouter(parseConfig({
    ...(t.config as object), listen: { host: "127.0.0.1", port: 0 }, transactions: { ...t.config.transactions, routerId: "three" },
    catalog: { ...c, host: "127.0.0.1", port },
  }));
  catalog = await Catalog.open(c);
}));

test.after(hook(async () => {
  await catalog?.close();
  await cutOff?.close();
  proxy?.close();
  for (const s of proxied) s.destroy();
  await second?.close();
  await t?.stop();
}));

interface Tally { transfers: number; inserts: string[]; retries: number; failures: string[] }

/** Runs Transfers and inserts through one router until `stop` is set; retries unavailable and aborted. */
async function client(url: string, name: string, stop: { now: boolean }, tally: Tally): Promise<void> {
  const rpc = createClient(RouterService, createConnectTransport({ baseUrl: url, httpVersion: "1.1" }));
  const call = async <T>(what: () => Promise<T>): Promise<T | undefined> => {
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        return await what();
      } catch (err) {
        const code = err instanceof ConnectError ? err.code : undefined;
        if (code !== Code.Unavailable && code !== Code.Aborted) {
          tally.failures.push(String((err as Error).message));
          return undefined;
        }
        tally.retries++;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    tally.failures.push("gave up after 50 attempts");
    return undefined;
  };
  for (let i = 0; !stop.now; i++) {
    const from = `acct-${(i * 7 + name.length * 13) % 1000}`;
    const to = `acct-${(i * 11 + 500) % 1000}`;
    if (from !== to) {
      const done = await call(() => rpc.transfer({ fromKey: from, toKey: to, amount: 1n, requestId: `${name}-${i}` }, { timeoutMs: 15_000 }));
      if (done) tally.transfers++;
    }
    const key = `${name}-new-${i}`;
    const inserted = await call(() => rpc.executeOnShard({
      key, sql: "insert into accounts (id, balance) values ($1, 5) on conflict (id) do nothing", params: [{ kind: { case: "stringValue", value: key } }],
    }, { timeoutMs: 15_000 }));
    if (inserted) tally.inserts.push(key);
  }
}

test("adding a shard with two routers writing and one cut off from the catalog: one map switch, every account once where Route says, no money lost, the cut-off router fenced by the source", async () => {
  const from = t.router.planner.map;
  const shardNames = t.config.shards.map((s) => s.name);
  const to = buildShardMap(t.config.placement, shardNames.map((name) => ({ name, weight: 1 })), { version: from.version + 1 });
  const stop = { now: false };
  const tallies: Tally[] = [];
  const clients = [t.router.url, t.router.url, second.url, second.url].map((url, i) => {
    const tally: Tally = { transfers: 0, inserts: [], retries: 0, failures: [] };
    tallies.push(tally);
    return client(url, `c${i}`, stop, tally);
  });
  const job = new ReshardJob({
    job: "add_shard_2", from, to, tables: [{ name: "accounts", keyColumn: "id" }],
    primary: (s) => asConfig(t.cluster.shards[shardNames.indexOf(s)].nodes[0]), retryAfterMs: 200,
  });
  let result;
  try {
    job.start();
    await waitFor("every source streaming", () => (Object.values(job.status.sources).every((s) => s.phase === "streaming") ? true : undefined), 60_000);
    await waitFor("the clients to get going", () => (tallies.every((x) => x.transfers > 5) ? true : undefined), 30_000);
    // Cut the third router off from the catalog: it keeps version 1 and never hears of the fence.
    proxy.close();
    for (const s of proxied) s.destroy();
    result = await job.cutOver({
      fences: new FenceStore(catalog), maps: new ShardMapStore(catalog), router: "test",
      to: { placement: t.config.placement, shards: shardNames.map((name) => ({ name, weight: 1, state: "active" as const })) },
      timeoutMs: 15_000, ackTimeoutMs: 3000, // generous: which routers acknowledge is asserted, not how fast
    });
    console.log(`  cutover: fenced ${result.fencedMs.toFixed(1)} ms (acknowledge ${result.steps.acknowledge.toFixed(1)}, settle ${result.steps.settle.toFixed(1)}, catch up ${result.steps.catchUp.toFixed(1)}, commit ${result.steps.commit.toFixed(1)})`);
    await waitFor("both serving routers on version 2", () => (t.router.planner.map.version === 2 && second.planner.map.version === 2 ? true : undefined), 10_000);
    const before = tallies.map((x) => x.transfers);
    await waitFor("the clients to go on under version 2", () => (tallies.every((x, i) => x.transfers > before[i] + 5) ? true : undefined), 30_000);
  } finally {
    stop.now = true;
    await Promise.all(clients);
    await job.stop();
  }
  assert.is(result.version, 2);
  assert.equal(result.acknowledged.sort(), ["one", "two"], "both routers that hear the catalog acknowledged");
  assert.equal(result.unacknowledged, ["three"], "the cut-off router did not, and was fenced by the sources instead");
  assert.equal(tallies.flatMap((x) => x.failures), [], "no client saw an error other than a retried unavailable or aborted");
  console.log(`  clients: ${tallies.reduce((n, x) => n + x.transfers, 0)} transfers, ${tallies.reduce((n, x) => n + x.inserts.length, 0)} inserts, ${tallies.reduce((n, x) => n + x.retries, 0)} retried`);

  const deleted = await job.cleanUp();
  assert.ok(deleted > 0, "the moved rows left the sources");

  // Every account exactly once, on the shard Route names; the money conserved.
  const owners = new Map<string, string[]>();
  let total = 0n;
  for (const [i, s] of t.cluster.shards.entries()) {
    const rows = await t.direct(s.nodes[0])<{ id: string; balance: string }[]>`select id, balance::text from accounts`;
    for (const r of rows) {
      owners.set(r.id, [...(owners.get(r.id) ?? []), shardNames[i]]);
      total += BigInt(r.balance);
    }
  }
  const inserts = tallies.flatMap((x) => x.inserts);
  for (const key of inserts) assert.ok(owners.has(key), `acknowledged insert ${key} is there`);
  assert.is(total, 1000n * 1000n + 5n * BigInt(owners.size - 1000), "every balance is accounted for");
  const doubled = [...owners].filter(([, where]) => where.length > 1);
  assert.equal(doubled.slice(0, 5), [], "no account on two shards");
  for (const [key, [where]] of owners) {
    if ((to.strategy.place(key) as { shard: string }).shard !== where) assert.unreachable(`${key} is on ${where}, the map says otherwise`);
  }
  const route = await t.connect.route({ key: "acct-1" });
  assert.is(route.shardMapVersion, 2n);
  const onNew = [...owners.values()].filter(([w]) => w === "shard-2").length;
  assert.ok(onNew > owners.size * 0.2 && onNew < owners.size * 0.46, `the new shard holds about a third: ${onNew} of ${owners.size}`);

  // The cut-off router still routes by version 1; a write to a key that moved is refused by its old shard.
  assert.is(cutOff.planner.map.version, 1);
  const moved = [...owners.keys()].find((k) => k.startsWith("acct-") && (from.strategy.place(k) as { shard: string }).shard !== (to.strategy.place(k) as { shard: string }).shard)!;
  const stale = createClient(RouterService, createConnectTransport({ baseUrl: cutOff.url, httpVersion: "1.1" }));
  const err = await stale.executeOnShard({
    key: moved, sql: "update accounts set balance = balance + 1 where id = $1", params: [{ kind: { case: "stringValue", value: moved } }],
  }, { timeoutMs: 10_000 }).then(() => undefined, (e) => e as ConnectError);
  assert.ok(err, "the stale write was refused");
  assert.is(err!.code, Code.Unavailable);
  assert.match(err!.rawMessage, /shard map is out of date: its writes carry epoch 0, this shard takes epoch \d+ or later.*SQLSTATE SR001/);

  // The link comes back: the router catches up with the catalog and writes there again.
  proxy = await catalogProxy(proxyPort);
  await waitFor("the cut-off router back on the catalog's map", () => (cutOff.planner.map.version === 2 ? true : undefined), 30_000);
  const again = await stale.executeOnShard({
    key: moved, sql: "update accounts set balance = balance + 1 where id = $1 returning id", params: [{ kind: { case: "stringValue", value: moved } }],
  }, { timeoutMs: 10_000 });
  assert.is(again.shard, "shard-2");
  assert.is(again.result?.rows.length, 1, "it reaches the moved account on its new shard");

  // Nothing left behind on the sources.
  for (const s of t.cluster.shards.slice(0, 2)) {
    const slots = await t.direct(s.nodes[0])`select slot_name from pg_replication_slots where slot_name like 'shardrouter_%'`;
    assert.is(slots.length, 0, `no slot left on ${s.name}`);
  }
});

test.run();
