// The shard map lives in the catalog (issue 11, stage 1): the first router seeds version 1 from its
// config; every router after it serves the catalog's map whatever its own config says; a new version
// reaches every router at once (NOTIFY) or by the next poll when the notification is lost; a version
// a router cannot serve is refused and the old one stays in force.
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as assert from "uvu/assert";
import { RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import { Catalog } from "../../server/catalog/catalog.js";
import { ShardMapStore, type StoredShard } from "../../server/catalog/shard-map-store.js";
import type { Config } from "../../server/config/config.js";
import { lineLogger } from "../../server/observability/logger.js";
import { type RunningRouter, startRouter } from "../../server/router.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
let other: RunningRouter;
let catalog: Catalog;
let store: ShardMapStore;
const lines: string[] = [];
const keys = Array.from({ length: 200 }, (_, i) => `acct-${i}`);

const clientOf = (url: string) => createClient(RouterService, createConnectTransport({ baseUrl: url, httpVersion: "1.1" }));
const routes = async (url: string) => {
  const client = clientOf(url);
  return Promise.all(keys.map(async (key) => {
    const r = await client.route({ key });
    return { shard: r.shard, version: Number(r.shardMapVersion) };
  }));
};
const versionOf = async (url: string) => Number((await clientOf(url).getTopology({})).shardMapVersion);
const active = (...names: string[]): StoredShard[] => names.map((name) => ({ name, weight: 1, state: "active" }));

test.before(hook(async () => {
  t = await startTestRouter({ shards: 3 });
  // A second router whose own config says hash_mod: the catalog's map must win.
  const config: Config = { ...t.config, listen: { ...t.config.listen, port: 0 }, placement: { strategy: "hash_mod" }, shardMap: { pollMs: 100 } };
  other = await startRouter(config, { log: (l) => lines.push(l) });
  catalog = await Catalog.open(t.config.catalog!);
  store = new ShardMapStore(catalog);
}));
test.after(hook(async () => {
  await other?.close();
  await catalog?.close();
  await t?.stop();
}));

test("the first router seeds version 1 from its config; a router with another config serves the catalog's", async () => {
  const rows = await t.direct(t.cluster.catalog)`select version::int, placement, shards from shardrouter.shard_maps order by version`;
  assert.is(rows.length, 1);
  assert.is(rows[0].version, 1);
  assert.is(rows[0].placement.strategy, "hash_ring");
  assert.equal(rows[0].shards.map((s: StoredShard) => [s.name, s.state]), [["shard-0", "active"], ["shard-1", "active"], ["shard-2", "active"]]);
  const topo = await clientOf(other.url).getTopology({});
  assert.is(topo.strategy, "hash_ring", "the catalog's strategy, not the config's hash_mod");
  assert.equal(await routes(other.url), await routes(t.router.url), "both routers place every key alike");
});

test("a new version reaches every router; its shard states show in GetTopology", async () => {
  const v2 = await store.publish(1, { strategy: "hash_ring", vnodes: 1024 }, [...active("shard-0", "shard-1"), { name: "shard-2", weight: 1, state: "retired" }], "test");
  assert.is(v2, 2);
  for (const url of [t.router.url, other.url]) {
    await waitFor(`version 2 at ${url}`, async () => ((await versionOf(url)) === 2 ? true : undefined));
    const placed = await routes(url);
    assert.ok(placed.every((p) => p.version === 2 && p.shard !== "shard-2"), "no key goes to the retired shard");
    const topo = await clientOf(url).getTopology({});
    const retired = topo.shards.find((s) => s.name === "shard-2")!;
    assert.is(retired.state, "retired");
    assert.is(retired.ownership?.keyspaceFraction, 0);
    assert.equal(topo.shards.filter((s) => s.state === "active").map((s) => s.name), ["shard-0", "shard-1"]);
  }
  assert.is(await store.publish(1, { strategy: "hash_mod" }, active("shard-0"), "late"), null, "a publish based on an old version is refused");
});

test("a version committed without a notification still arrives by the poll", async () => {
  // As if the NOTIFY were lost: the row alone, no pg_notify.
  const admin = t.direct(t.cluster.catalog);
  await admin`insert into shardrouter.shard_maps (version, placement, shards, created_by)
    values (3, ${admin.json({ strategy: "hash_mod" })}, ${admin.json(active("shard-0", "shard-1", "shard-2") as never)}, 'silent')`;
  for (const url of [t.router.url, other.url]) {
    await waitFor(`version 3 at ${url} by polling`, async () => ((await versionOf(url)) === 3 ? true : undefined));
    assert.is((await clientOf(url).getTopology({})).strategy, "hash_mod");
  }
});

test("a version naming a shard a router has no nodes for is refused there; the map in force stays", async () => {
  const v4 = await store.publish(3, { strategy: "hash_ring", vnodes: 1024 }, active("shard-0", "shard-9"), "test");
  assert.is(v4, 4);
  await waitFor("the refusal to be logged", () => (lines.some((l) => l.includes("shard map version 4 cannot be served")) ? true : undefined));
  assert.match(lines.find((l) => l.includes("shard map version 4"))!, "shard-9");
  assert.is(await versionOf(other.url), 3, "version 3 stays in force");
  assert.ok((await routes(other.url)).every((p) => p.version === 3));
  // The next good version is taken as usual.
  assert.is(await store.publish(4, { strategy: "hash_ring", vnodes: 1024 }, active("shard-0", "shard-1", "shard-2"), "test"), 5);
  await waitFor("version 5", async () => ((await versionOf(other.url)) === 5 ? true : undefined));
});

test("a router started later serves the catalog's latest version, not its config's", async () => {
  const late = await startRouter({ ...t.config, listen: { ...t.config.listen, port: 0 }, placement: { strategy: "legacy_md5_mod" } }, { logger: lineLogger(() => {}) });
  try {
    assert.is(await versionOf(late.url), 5);
    assert.equal(await routes(late.url), await routes(other.url));
  } finally {
    await late.close();
  }
});

test("a malformed row written by hand is refused with the field it gets wrong; the map in force stays", async () => {
  const admin = t.direct(t.cluster.catalog);
  await admin`insert into shardrouter.shard_maps (version, placement, shards, created_by)
    values (6, ${admin.json({ strategy: "hash_ring" })}, ${admin.json([{ name: "shard-0", weight: 0, state: "active" }] as never)}, 'by hand')`;
  await waitFor("the refusal of version 6", () => (lines.some((l) => l.includes("shard map version 6 in the catalog is malformed")) ? true : undefined));
  assert.match(lines.find((l) => l.includes("version 6 in the catalog is malformed"))!, "shards[0].weight");
  assert.is(await versionOf(other.url), 5);
});

test.run();
