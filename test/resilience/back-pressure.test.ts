// A flood beyond a node's capacity (pool max running + maxWaiting queued) is refused at once with
// RESOURCE_EXHAUSTED instead of queueing without bound; what was admitted completes.
import { Code, ConnectError } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
const max = 2;
const maxWaiting = 6;
test.before(hook(async () => { t = await startTestRouter({ shards: 1, pool: { max, maxWaiting } }); }));
test.after(hook(async () => { await t?.stop(); }));

test("a flood gets RESOURCE_EXHAUSTED beyond running + waiting capacity; the queue never grows past it", async () => {
  const flood = 60;
  let maxQueued = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const topo = await t.connect.getTopology({});
      maxQueued = Math.max(maxQueued, topo.shards[0].nodes[0].poolWaiting);
    }
  })();
  const outcomes = await Promise.all(Array.from({ length: flood }, () =>
    t.connect.executeOnShard({ key: "k", sql: "select pg_sleep(0.2)" }, { timeoutMs: 30_000 })
      .then(() => "ok", (e) => Code[ConnectError.from(e).code])));
  sampling = false;
  await sampler;
  const ok = outcomes.filter((o) => o === "ok").length;
  const exhausted = outcomes.filter((o) => o === "ResourceExhausted").length;
  assert.is(ok + exhausted, flood, `only ok or RESOURCE_EXHAUSTED: ${outcomes}`);
  assert.ok(exhausted > 0, "the flood was refused in part");
  assert.ok(ok >= max, "what was admitted ran");
  assert.ok(maxQueued <= maxWaiting, `queue stayed bounded: ${maxQueued} <= ${maxWaiting}`);
  const err = await Promise.all(Array.from({ length: max + maxWaiting + 5 }, () =>
    t.connect.executeOnShard({ key: "k", sql: "select pg_sleep(0.2)" }).then(() => undefined, (e) => ConnectError.from(e))));
  const refusal = err.find((e) => e?.code === Code.ResourceExhausted)!;
  assert.match(refusal.rawMessage, "overloaded");
});

test.run();
