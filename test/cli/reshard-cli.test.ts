// The operator's commands (sdk/src/cli/admin-commands.ts) against a real router: `reshard add …
// --wait` follows a job to its end and exits 0; `status` lists it (and --json prints the job as
// GetReshard answers it); a request the router refuses exits 1 with its reason.
import * as assert from "uvu/assert";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";
import { runCli } from "./run-cli.js";

let t: TestRouter;

test.before(hook(async () => {
  t = await startTestRouter({ shards: 4, spareShards: 1, unconfiguredShards: 1 });
  await seedDemoAccounts(t.router.planner);
}));
test.after(hook(async () => { await t?.stop(); }));

/** stdout and stderr together, as the old command printed everything to one of them. */
async function cli(...args: string[]): Promise<{ code: number | null; out: string }> {
  const { code, stdout, stderr } = await runCli([...args, "--url", t.router.url]);
  return { code, out: stdout + stderr };
}

test("reshard add --wait follows the job to done; status lists it; a refused request exits 1 with the reason", async () => {
  const added = await cli("reshard", "add", "shard-2", "--job-id", "cli_add", "--wait");
  assert.is(added.code, 0, added.out);
  assert.match(added.out, /shard-0 → shard-2: about \d+ rows/);
  assert.match(added.out, /cli_add: done · .*shard map v1 → v2/);
  const status = await cli("reshard", "status");
  assert.is(status.code, 0, status.out);
  assert.match(status.out, /^cli_add: done/m);
  const json = await runCli(["reshard", "status", "cli_add", "--json", "--url", t.router.url]);
  assert.is(json.code, 0, json.stderr);
  const job = JSON.parse(json.stdout);
  assert.is(job.jobId, "cli_add");
  assert.is(job.phase, "RESHARD_PHASE_DONE");
  assert.equal([job.fromVersion, job.toVersion], ["1", "2"], "uint64 as strings (protobuf's JSON mapping)");
  assert.equal(job.moves.map((m: { target: string }) => m.target), job.moves.map(() => "shard-2"));
  const refused = await cli("reshard", "cancel", "cli_add");
  assert.is(refused.code, 1);
  assert.match(refused.out, /shardrouter: reshard job "cli_add" is done: only a job before its cutover can be cancelled \(FailedPrecondition\)/);
  const usage = await cli("reshard");
  assert.is(usage.code, 2);
  assert.match(usage.out, /^shardrouter: reshard needs one of: add, drain, status, cutover, cancel, complete, reverse\nusage: shardrouter reshard add SHARD/);
});

test("reshard complete confirms the clean-up; reshard reverse --wait moves the rows back under a new job", async () => {
  // The clean-up runs by itself after the cutover: complete is refused (exit 1, with what holds it) until it is done.
  let completed = { code: null as number | null, out: "" };
  await waitFor("reshard complete cli_add to succeed", async () => {
    completed = await cli("reshard", "complete", "cli_add");
    if (completed.code !== 0) assert.match(completed.out, /\(FailedPrecondition\)/);
    return completed.code === 0 ? true : undefined;
  }, 60_000);
  assert.match(completed.out, /^cli_add: done/m);
  const reversed = await cli("reshard", "reverse", "cli_add", "--wait");
  assert.is(reversed.code, 0, reversed.out);
  assert.match(reversed.out, /cli_add_reverse: done · .*shard map v2 → v3/);
  const topology = await t.connect.getTopology({});
  assert.is(topology.shards.find((s) => s.name === "shard-2")?.state, "retired", "the added shard owns no keys again");
  const again = await cli("reshard", "reverse", "no_such_job");
  assert.is(again.code, 1);
  assert.match(again.out, /\(NotFound\)/);
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
