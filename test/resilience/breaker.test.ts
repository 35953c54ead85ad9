// A node's circuit breaker: opens after the configured number of consecutive failures, then fails
// calls at once (well under their deadline) with UNAVAILABLE naming the shard and node, and closes
// again by itself once the node is back. A Postgres error never opens it.
import { Code, ConnectError } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
test.before(hook(async () => {
  t = await startTestRouter({
    shards: 2,
    breaker: { failureThreshold: 3, halfOpenAfterMs: 300 },
    health: { intervalMs: 100, timeoutMs: 1000 },
  });
}));
test.after(hook(async () => { await t?.stop(); }));

async function keyOn(shard: string): Promise<string> {
  return waitFor(`a key on ${shard}`, async () => {
    for (let i = 0; i < 100; i++) if ((await t.connect.route({ key: `k${i}` })).shard === shard) return `k${i}`;
    return undefined;
  });
}

async function breakerOf(node: string): Promise<string | undefined> {
  const topo = await t.connect.getTopology({});
  return topo.shards.flatMap((s) => s.nodes).find((n) => n.name === node)?.breaker;
}

test("Postgres errors do not open the breaker", async () => {
  const node = t.cluster.shards[0].nodes[0];
  const key = await keyOn(t.cluster.shards[0].name);
  for (let i = 0; i < 6; i++) {
    const err = await t.connect.executeOnShard({ key, sql: "select 1 / 0" }).then(() => undefined, (e) => ConnectError.from(e));
    assert.is(err?.code, Code.InvalidArgument);
  }
  assert.is(await breakerOf(node.name), "closed");
  // Seen by a caller: an open breaker would fail this at once with "circuit breaker is open".
  const ok = await t.connect.executeOnShard({ key, sql: "select 1 as one" });
  assert.is(ok.result?.rows.length, 1);
});

test("opens after the threshold, fails fast while open, closes when the node is back", async () => {
  const shard = t.cluster.shards[1];
  const node = shard.nodes[0];
  const key = await keyOn(shard.name);
  await t.cluster.stopNode(node.name, "immediate");
  try {
    await waitFor("the breaker to open", async () => {
      await t.connect.executeOnShard({ key, sql: "select 1" }, { timeoutMs: 5000 }).catch(() => undefined);
      return (await breakerOf(node.name)) === "open" ? true : undefined;
    });
    const started = Date.now();
    const err = await t.connect.executeOnShard({ key, sql: "select 1" }, { timeoutMs: 10_000 }).then(() => undefined, (e) => ConnectError.from(e));
    const elapsed = Date.now() - started;
    assert.is(err?.code, Code.Unavailable);
    assert.match(err!.rawMessage, shard.name);
    assert.ok(elapsed < 5000, `failed fast: ${elapsed} ms against a 10 s deadline`);
    const other = await t.connect.executeOnShard({ key: await keyOn(t.cluster.shards[0].name), sql: "select 1 as one" });
    assert.is(other.result?.rows.length, 1, "the other shard is unaffected");
  } finally {
    await t.cluster.startNode(node.name);
  }
  await waitFor("the breaker to close and the shard to answer", async () => {
    try {
      await t.connect.executeOnShard({ key, sql: "select 1" });
      return (await breakerOf(node.name)) === "closed" ? true : undefined;
    } catch { return undefined; }
  }, 20_000);
});

test.run();
