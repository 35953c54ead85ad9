// A hung node (its postgres processes SIGSTOPped): callers wait no longer than their deadline, the
// router marks the node down, and once it resumes every pool slot comes back and statements work.
import { Code, ConnectError } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import { processesInDir } from "../../server/dev-cluster/leftover-server.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
test.before(hook(async () => {
  // Generous probe timeout and frequent half-open probes: on a loaded CI machine a slow probe after the
  // node resumes must not keep the breaker open past the wait below.
  t = await startTestRouter({ shards: 2, health: { intervalMs: 100, timeoutMs: 1000 }, breaker: { failureThreshold: 3, halfOpenAfterMs: 500 }, pool: { max: 4 } });
}));
test.after(hook(async () => { await t?.stop(); }));

test("SIGSTOPped node: deadline-bounded failures, no pool slot leaked after it resumes", async () => {
  const shard = t.cluster.shards[0];
  const node = shard.nodes[0];
  const key = await waitFor("a key on the shard", async () => {
    for (let i = 0; i < 100; i++) if ((await t.connect.route({ key: `k${i}` })).shard === shard.name) return `k${i}`;
    return undefined;
  });
  await t.connect.executeOnShard({ key, sql: "select 1" }); // pool warm
  const pids = await processesInDir(node.dataDir);
  assert.ok(pids.length > 0);
  for (const pid of pids) process.kill(pid, "SIGSTOP");
  try {
    const calls = await Promise.all(Array.from({ length: 8 }, async () => {
      const started = Date.now();
      const err = await t.connect.executeOnShard({ key, sql: "select 1" }, { timeoutMs: 700 }).then(() => undefined, (e) => ConnectError.from(e));
      return { code: err?.code, elapsed: Date.now() - started };
    }));
    for (const c of calls) {
      assert.ok(c.code === Code.DeadlineExceeded || c.code === Code.Unavailable, `code ${c.code}`);
      assert.ok(c.elapsed < 700 + 1500, `a caller waited ${c.elapsed} ms against a 700 ms deadline`);
    }
    await waitFor("the router to mark the node down", async () => {
      const topo = await t.connect.getTopology({});
      return topo.shards.flatMap((s) => s.nodes).find((n) => n.name === node.name)?.status === "down" ? true : undefined;
    });
  } finally {
    for (const pid of await processesInDir(node.dataDir)) process.kill(pid, "SIGCONT");
    for (const pid of pids) { try { process.kill(pid, "SIGCONT"); } catch { /* gone */ } }
  }
  let seen = "";
  await waitFor("every slot back and the node answering", async () => {
    const topo = await t.connect.getTopology({});
    const n = topo.shards.flatMap((s) => s.nodes).find((x) => x.name === node.name)!;
    seen = `status ${n.status}, breaker ${n.breaker}, in use ${n.poolInUse}, waiting ${n.poolWaiting}`;
    if (n.status !== "up" || n.poolInUse !== 0 || n.poolWaiting !== 0) return undefined;
    try {
      return (await t.connect.executeOnShard({ key, sql: "select 1 as one" })).result?.rows.length === 1 ? true : undefined;
    } catch (err) {
      seen += `; select 1: ${(err as Error).message}`;
      return undefined;
    }
  }, 30_000).catch((err) => { throw new Error(`${err.message} (last seen: ${seen})`); });
});

test.run();
