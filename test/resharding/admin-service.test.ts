// AdminService end to end (server/rpc/admin-service.ts, server/resharding/job-runner.ts): a job is
// started with one RPC, runs on the router that holds its lease (copy, stream, verify, cutover,
// clean-up) while a client keeps writing, and GetReshard tells each phase. A second job is
// cancelled once ready and leaves nothing behind. Bad requests get typed errors.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as assert from "uvu/assert";
import { AdminService, ReshardPhase } from "../../gen/shardrouter/v1/admin_pb.js";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
let admin: ReturnType<typeof createClient<typeof AdminService>>;

test.before(hook(async () => {
  t = await startTestRouter({ shards: 3, spareShards: 1 });
  await seedDemoAccounts(t.router.planner);
  admin = createClient(AdminService, createConnectTransport({ baseUrl: t.router.url, httpVersion: "1.1" }));
}));
test.after(hook(async () => { await t?.stop(); }));

const codeOf = (p: Promise<unknown>) => p.then(() => undefined, (e) => (e instanceof ConnectError ? e.code : e));

async function accounts(): Promise<Map<string, string[]>> {
  const owners = new Map<string, string[]>();
  for (const s of t.cluster.shards) {
    for (const r of await t.direct(s.nodes[0])<{ id: string }[]>`select id from accounts`) owners.set(r.id, [...(owners.get(r.id) ?? []), s.name]);
  }
  return owners;
}

test("StartReshard adds a shard with auto_cutover: the job reports its plan and phases and ends done, with every account once where Route says", async () => {
  const stop = { now: false };
  let inserted = 0;
  const writer = (async () => {
    for (let i = 0; !stop.now; i++) {
      const key = `w-${i}`;
      await t.connect.executeOnShard({ key, sql: "insert into accounts values ($1, 1)", params: [{ kind: { case: "stringValue", value: key } }] });
      inserted++;
    }
  })();
  // Transfers answered before the job; their retries come after the cutover (a client that lost the
  // answer). Each must be a replay wherever its keys went, not a second transfer.
  const before = [];
  for (let i = 0; i < 60; i++) {
    const req = { fromKey: `acct-${i}`, toKey: `acct-${999 - i}`, amount: 7n, requestId: `before-job-${i}` };
    before.push({ req, res: await t.connect.transfer(req) });
  }
  const balances = async () => Object.fromEntries((await t.connect.executeOnAll({ sql: "select id, balance from accounts where id like 'acct-%'" }))
    .result!.rows.map((r) => [String(r.values[0].kind.value), String(r.values[1].kind.value)]));
  const balancesBefore = await balances();
  const started = await admin.startReshard({ jobId: "add_two", addShards: [{ name: "shard-2", weight: 1 }], autoCutover: true });
  const job = started.reshard!;
  assert.is(job.jobId, "add_two");
  assert.is(job.fromVersion, 1n);
  assert.equal(job.moves.map((m) => m.target).sort(), ["shard-2", "shard-2"], "both sources give keys to the new shard");
  assert.ok(job.moves.every((m) => m.estimatedRows > 0n), "with rows counted");
  assert.is(job.runner, t.router.routerId, "this router holds the lease");
  const seen = new Set<ReshardPhase>();
  const done = await waitFor("the job to finish", async () => {
    const r = (await admin.getReshard({ jobId: "add_two" })).reshard!;
    seen.add(r.phase);
    if (r.phase === ReshardPhase.FAILED) throw new Error(`the job failed: ${r.error}`);
    return r.phase === ReshardPhase.DONE ? r : undefined;
  }, 90_000);
  stop.now = true;
  await writer;
  assert.ok(inserted > 0);
  assert.is(done.toVersion, 2n);
  assert.ok(done.verify && done.verify.rowsCompared > 0n && done.verify.mismatches === 0n, "verified, no mismatch");
  assert.equal(done.cutover?.acknowledged, [t.router.routerId]);
  assert.is(done.error, "");
  assert.ok(seen.has(ReshardPhase.DONE));
  assert.is((await t.connect.route({ key: "acct-1" })).shardMapVersion, 2n);
  const owners = await accounts();
  assert.is(owners.size, 1000 + inserted, "every account, old and new, is there");
  for (const [key, where] of owners) {
    assert.is(where.length, 1, `${key} is on one shard`);
    if ((await t.connect.route({ key })).shard !== where[0]) assert.unreachable(`${key} is on ${where[0]}, Route says otherwise`);
  }
  const list = await admin.listReshards({});
  assert.equal(list.reshards.map((r) => r.jobId), ["add_two"]);
  // Per table: what was copied, and what the plan counted (the accounts and the request log).
  assert.equal(done.tables.map((x) => x.table), ["accounts", "shardrouter.requests"]);
  assert.is(done.tables.reduce((n, x) => n + x.rowsTotal, 0n), job.moves.reduce((n, m) => n + m.estimatedRows, 0n));
  const [accountsMoved, recordsMoved] = done.tables;
  assert.ok(accountsMoved.rowsTotal > 0n && accountsMoved.rowsCopied >= accountsMoved.rowsTotal, `accounts ${accountsMoved.rowsCopied}/${accountsMoved.rowsTotal}`);
  assert.ok(recordsMoved.rowsTotal > 0n && recordsMoved.rowsCopied === recordsMoved.rowsTotal, `request records ${recordsMoved.rowsCopied}/${recordsMoved.rowsTotal}`);
  let movedHomes = 0;
  for (const { req, res } of before) {
    const again = await t.connect.transfer(req);
    assert.ok(again.replayed, `${req.requestId} is a replay after the cutover`);
    assert.is(again.transactionId, res.transactionId);
    const home = req.fromKey < req.toKey ? req.fromKey : req.toKey;
    if ((await t.connect.route({ key: home })).shard === "shard-2") movedHomes++;
  }
  assert.ok(movedHomes > 0, "some records moved with their keys to the new shard");
  assert.equal(await balances(), balancesBefore, "no transfer applied twice");
});

test("a job cancelled when ready leaves nothing behind: no slot, no copied row, the map unchanged", async () => {
  const before = await accounts();
  await admin.startReshard({ jobId: "drain_two", drainShards: ["shard-2"] });
  await waitFor("the job to be ready", async () => {
    const r = (await admin.getReshard({ jobId: "drain_two" })).reshard!;
    if (r.phase === ReshardPhase.FAILED) throw new Error(r.error);
    return r.phase === ReshardPhase.READY ? true : undefined;
  }, 90_000);
  assert.is(await codeOf(admin.startReshard({ jobId: "another", drainShards: ["shard-1"] })), Code.FailedPrecondition, "one job at a time");
  const during = await t.connect.getTopology({});
  assert.equal(during.shards.map((s) => [s.name, s.state]), [["shard-0", "active"], ["shard-1", "active"], ["shard-2", "draining"]], "the job's shards in GetTopology");
  // Every shard of the map in force streams (a source that gives no rows yet might, from a later insert).
  const slots = during.shards.map((s) => [s.name, s.replicationSlots.map((x) => [x.name, x.active])]);
  assert.equal(slots, ["shard-0", "shard-1", "shard-2"].map((n) => [n, [[`shardrouter_drain_two_${n.replace("-", "_")}`, true]]]), "GetTopology shows each source's slot, in use");
  const metrics = await (await fetch(`${t.router.url}/metrics`)).text();
  assert.match(metrics, /^shardrouter_replication_slot_lag_bytes\{shard="shard-2",slot="shardrouter_drain_two_shard_2"\} \d+$/m);
  await admin.cancelReshard({ jobId: "drain_two" });
  await waitFor("the job to be cancelled", async () => ((await admin.getReshard({ jobId: "drain_two" })).reshard!.phase === ReshardPhase.CANCELLED ? true : undefined), 30_000);
  assert.is(t.router.planner.map.version, 2);
  assert.ok((await t.connect.getTopology({})).shards.every((s) => s.replicationSlots.length === 0), "no slot in GetTopology after the cancel");
  const after = await accounts();
  assert.equal([...after].filter(([, w]) => w.length > 1).slice(0, 3), [], "no copy left on the other shards");
  assert.is(after.size, before.size);
  for (const s of t.cluster.shards) {
    const slots = await t.direct(s.nodes[0])`select slot_name from pg_replication_slots where slot_name like 'shardrouter_%'`;
    assert.is(slots.length, 0, `no slot on ${s.name}`);
  }
});

test("bad requests get typed errors", async () => {
  assert.is(await codeOf(admin.startReshard({ addShards: [{ name: "shard-9", weight: 1 }] })), Code.InvalidArgument, "unknown shard");
  assert.is(await codeOf(admin.startReshard({ jobId: "Bad Id", addShards: [{ name: "shard-2", weight: 1 }] })), Code.InvalidArgument);
  assert.is(await codeOf(admin.startReshard({})), Code.InvalidArgument, "nothing to do");
  assert.is(await codeOf(admin.startReshard({ jobId: "add_two", setWeights: [{ name: "shard-0", weight: 2 }] })), Code.AlreadyExists);
  assert.is(await codeOf(admin.getReshard({ jobId: "nope" })), Code.NotFound);
  assert.is(await codeOf(admin.cancelReshard({ jobId: "add_two" })), Code.FailedPrecondition, "a job past its cutover cannot be cancelled");
  assert.is(await codeOf(admin.startReshard({ placementJson: "{", shards: [{ name: "shard-0", weight: 1 }] })), Code.InvalidArgument);
  assert.is((await admin.completeReshard({ jobId: "add_two" })).reshard?.phase, ReshardPhase.DONE, "a done job's clean-up is complete");
  assert.is(await codeOf(admin.completeReshard({ jobId: "drain_two" })), Code.FailedPrecondition, "a cancelled job has nothing to complete");
});

test("ReverseReshard moves the rows back to the map before the job, as a new job; a job that is not done cannot be reversed", async () => {
  assert.is(await codeOf(admin.reverseReshard({ jobId: "drain_two" })), Code.FailedPrecondition, "a cancelled job");
  const before = await accounts();
  const reverse = (await admin.reverseReshard({ jobId: "add_two" })).reshard!;
  assert.is(reverse.jobId, "add_two_reverse");
  assert.ok(reverse.moves.length > 0 && reverse.moves.every((m) => m.source === "shard-2"), "only the added shard gives rows back");
  const done = await waitFor("the reverse to finish", async () => {
    const r = (await admin.getReshard({ jobId: "add_two_reverse" })).reshard!;
    if (r.phase === ReshardPhase.FAILED) throw new Error(r.error);
    return r.phase === ReshardPhase.DONE ? r : undefined;
  }, 90_000);
  assert.is(done.toVersion, 3n);
  assert.is(done.reverses, "add_two");
  assert.is((await admin.getReshard({ jobId: "add_two" })).reshard!.phase, ReshardPhase.REVERSED, "the job it undid reads reversed");
  assert.is(await codeOf(admin.reverseReshard({ jobId: "add_two" })), Code.FailedPrecondition, "a reversed job is not reversed again");
  const after = await accounts();
  assert.is(after.size, before.size, "no account lost or added");
  assert.ok([...after.values()].every((w) => w.length === 1 && w[0] !== "shard-2"), "all back on shard-0 and shard-1, once each");
  const topo = await t.connect.getTopology({});
  assert.is(topo.shards.find((s) => s.name === "shard-2")?.state, "retired");
});

test("drain_shards: every row of the drained shard moves to the others and the shard owns no keys afterwards", async () => {
  const before = await accounts();
  const onOne = [...before.values()].filter(([w]) => w === "shard-1").length;
  assert.ok(onOne > 0);
  const started = (await admin.startReshard({ jobId: "drain_one", drainShards: ["shard-1"], autoCutover: true })).reshard!;
  // Its accounts and the request records kept under their keys (Transfers' idempotency records);
  // a record from before records had keys (home_key '') has no owner elsewhere and stays.
  const one = t.direct(t.cluster.shards[1].nodes[0]);
  const [{ records }] = await one<{ records: number }[]>`select count(*)::int as records from shardrouter.requests`;
  await one`insert into shardrouter.requests (home_key, request_id, request_hash, transaction_id) values ('', 'from-the-first-layout', decode('00', 'hex'), 'tx')`;
  assert.ok(records > 0, "shard-1 keeps request records");
  assert.equal(started.moves.map((m) => [m.source, m.target, m.estimatedRows]), [["shard-1", "shard-0", BigInt(onOne + records)]]);
  await waitFor("the drain to finish", async () => {
    const r = (await admin.getReshard({ jobId: "drain_one" })).reshard!;
    if (r.phase === ReshardPhase.FAILED) throw new Error(r.error);
    return r.phase === ReshardPhase.DONE ? true : undefined;
  }, 90_000);
  const after = await accounts();
  assert.is(after.size, before.size);
  assert.ok([...after.values()].every((w) => w.length === 1 && w[0] === "shard-0"), "every account on shard-0, once");
  const left = await one<{ request_id: string }[]>`select request_id from shardrouter.requests`;
  assert.equal(left.map((r) => r.request_id), ["from-the-first-layout"], "the request records went with their keys; the keyless one stayed");
  const topo = await t.connect.getTopology({});
  assert.equal(topo.shards.map((s) => [s.name, s.state]), [["shard-0", "active"], ["shard-1", "retired"], ["shard-2", "retired"]]);
});

test.run();
