// The operator's command (cli/main.ts) against a real router: `reshard add … --wait` follows a job to
// its end and exits 0; `status` lists it; a request the router refuses exits 1 with its reason.
import { spawn } from "node:child_process";
import * as assert from "uvu/assert";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

const root = new URL("../..", import.meta.url).pathname;
let t: TestRouter;

test.before(hook(async () => {
  t = await startTestRouter({ shards: 4, spareShards: 1, unconfiguredShards: 1 });
  await seedDemoAccounts(t.router.planner);
}));
test.after(hook(async () => { await t?.stop(); }));

function cli(...args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", "cli/main.ts", ...args, "--url", t.router.url], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("exit", (code) => resolve({ code, out }));
  });
}

test("reshard add --wait follows the job to done; status lists it; a refused request exits 1 with the reason", async () => {
  const added = await cli("reshard", "add", "shard-2", "--job-id", "cli_add", "--wait");
  assert.is(added.code, 0, added.out);
  assert.match(added.out, /shard-0 → shard-2: about \d+ rows/);
  assert.match(added.out, /cli_add: done · .*shard map v1 → v2/);
  const status = await cli("reshard", "status");
  assert.is(status.code, 0, status.out);
  assert.match(status.out, /^cli_add: done/m);
  const refused = await cli("reshard", "cancel", "cli_add");
  assert.is(refused.code, 1);
  assert.match(refused.out, /shardrouter: reshard job "cli_add" is done: only a job before its cutover can be cancelled \(FailedPrecondition\)/);
  const usage = await cli("reshard");
  assert.is(usage.code, 2);
  assert.match(usage.out, /^usage: shardrouter shard add/);
});

test("shard add registers a running server as an empty shard; a node nobody answers on exits 1 with the reason", async () => {
  const node = t.cluster.shards[3].nodes[0];
  const refused = await cli("shard", "add", "shard-3", "--primary", `${node.host}:1/${node.database}`);
  assert.is(refused.code, 1);
  assert.match(refused.out, `cannot use shard-3-primary (${node.host}:1, database ${node.database})`);
  const added = await cli("shard", "add", "shard-3", "--primary", `${node.host}:${node.port}/${node.database}`, "--weight", "3");
  assert.is(added.code, 0, added.out);
  assert.match(added.out, `shard-3: registered (spare, weight 3): shard-3-primary ${node.host}:${node.port}`);
  assert.match(added.out, "next: shardrouter reshard add shard-3 --wait");
  const topology = await t.connect.getTopology({});
  assert.is(topology.shards.find((s) => s.name === "shard-3")?.state, "spare");
  assert.is((await cli("shard", "add", "shard-3")).code, 2, "no --primary: the usage");
});

test.run();
