// Failover as the logs and metrics tell it: a primary dies (node down, breaker open, no writer), its
// replica is promoted (writer changed, counted), the old primary comes back on the old timeline
// (fenced). Each event is a JSON line with the shard and node as fields.
import * as assert from "uvu/assert";
import { lineLogger } from "../../server/observability/logger.js";
import { type RunningRouter, startRouter } from "../../server/router.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";
import { scrape } from "./scrape.js";

let t: TestRouter;
let router: RunningRouter;
const lines: Record<string, unknown>[] = [];

function event(msg: string, fields: Record<string, unknown>): Promise<Record<string, unknown>> {
  return waitFor(`a "${msg}" line with ${JSON.stringify(fields)}`, () =>
    lines.find((l) => l.msg === msg && Object.entries(fields).every(([k, v]) => l[k] === v)), 20_000);
}

test.before(hook(async () => {
  t = await startTestRouter({ shards: 1, replicas: 1, health: { intervalMs: 100, timeoutMs: 500 }, breaker: { failureThreshold: 2, halfOpenAfterMs: 300 } });
  router = await startRouter({ ...t.config, listen: { ...t.config.listen, port: 0 } }, { logger: lineLogger((l) => lines.push(JSON.parse(l))) });
}));
test.after(hook(async () => {
  await router?.close();
  await t?.stop();
}));

test("primary down, replica promoted, old primary fenced: logged with structured fields and counted", async () => {
  const shard = t.cluster.shards[0].name;
  const [primary, replica] = t.cluster.shards[0].nodes;
  const before = await scrape(router.url);
  assert.is(before.value("shardrouter_shard_writer_changes_total", { shard }), 0);

  await t.cluster.stopNode(primary.name, "immediate");
  const down = await event("node down", { shard, node: primary.name });
  assert.is(down.level, "warn");
  assert.is(down.address, `${primary.host}:${primary.port}`);
  assert.is((await event("circuit breaker opened: calls to the node fail fast", { shard, node: primary.name })).level, "warn");
  await event("shard has no writable node", { shard, previous: primary.name });

  await t.cluster.promote(replica.name);
  const changed = await event("shard writer changed", { shard, writer: replica.name, previous: primary.name });
  assert.is(changed.level, "warn");
  await event("node is writable now (promoted)", { shard, node: replica.name });

  await t.cluster.startNode(primary.name);
  const fenced = await event("node fenced: writable on an older timeline than its shard; it gets no statements", { shard, node: primary.name });
  assert.ok((fenced.timeline as number) < (fenced.shardTimeline as number), "fenced for its older timeline");

  const after = await scrape(router.url);
  assert.is(after.value("shardrouter_shard_writer_changes_total", { shard }), 1);
  assert.is(after.value("shardrouter_node_writable", { shard, node: replica.name }), 1);
  assert.is(after.value("shardrouter_node_fenced", { shard, node: primary.name }), 1);
  for (const secret of [primary.password, t.cluster.routerRole.password]) {
    for (const l of lines) assert.not.ok(JSON.stringify(l).includes(secret), "no password in a log line");
  }
});

test.run();
