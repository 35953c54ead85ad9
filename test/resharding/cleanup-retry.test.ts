// After the cutover commits, a job can only go forward. Here the clean-up of the sources fails (a
// trigger refuses the deletes of the moved rows): the job must not fail and cancel, which would
// delete the new owners' rows, the only current ones since the cutover. It says what went wrong,
// keeps the new map, tries again, and finishes once the sources let it; no transfer is lost.
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as assert from "uvu/assert";
import { AdminService, ReshardPhase } from "../../gen/shardrouter/v1/admin_pb.js";
import { demoAccountCount, demoStartingBalance, seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { accountsOnShards } from "../harness/accounts.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
const logLines: string[] = [];

test.before(hook(async () => {
  t = await startTestRouter({ shards: 3, spareShards: 1, resharding: { leaseMs: 1500 }, log: (l) => logLines.push(l) });
  await seedDemoAccounts(t.router.planner);
}));
test.after(hook(async () => { await t?.stop(); }));

test("a clean-up that fails after the cutover is tried again, never undone; the moved rows and every transfer stay", async () => {
  const sources = t.cluster.shards.slice(0, 2).map((s) => t.direct(s.nodes[0]));
  for (const sql of sources) {
    await sql.unsafe(`create function refuse_delete() returns trigger language plpgsql as $$
      begin raise exception 'deletes are refused on this shard for now'; end $$`);
    await sql.unsafe("create trigger refuse_delete before delete on accounts for each statement execute function refuse_delete()");
  }
  const admin = createClient(AdminService, createConnectTransport({ baseUrl: t.router.url, httpVersion: "1.1" }));
  const stop = { now: false };
  let transfers = 0;
  const t0 = Date.now();
  const events: string[] = []; // job phases as the writer saw them, for a failure's message
  let lastPhase = -1;
  const watcher = setInterval(async () => {
    const r = (await admin.getReshard({ jobId: "stuck_cleanup" }).catch(() => undefined))?.reshard;
    if (r && r.phase !== lastPhase) { lastPhase = r.phase; events.push(`${Date.now() - t0}ms ${ReshardPhase[r.phase]} v${t.router.planner.map.version}`); }
  }, 20);
  const writer = (async () => {
    for (let i = 0; !stop.now; i++) {
      const began = Date.now();
      await t.connect.transfer({ fromKey: `acct-${i % 997}`, toKey: `acct-${(i * 31 + 7) % 997}`, amount: 1n, requestId: `cleanup-${i}` }, { timeoutMs: 20_000 })
        .then(() => transfers++, (err) => { if (!/insufficient funds|must differ|aborted|unavailable/i.test(String(err))) throw new Error(`transfer ${i} (acct-${i % 997} -> acct-${(i * 31 + 7) % 997}) begun at ${began - t0}ms: ${err}; job phases: ${events.join(" | ")}`); });
    }
  })().then(() => undefined, (err: unknown) => err);
  try {
    await admin.startReshard({ jobId: "stuck_cleanup", addShards: [{ name: "shard-2", weight: 1 }], autoCutover: true });
    const stuck = await waitFor("the cutover to commit and the clean-up to fail", async () => {
      const r = (await admin.getReshard({ jobId: "stuck_cleanup" })).reshard!;
      if (r.phase === ReshardPhase.FAILED || r.phase === ReshardPhase.CANCELLED) throw new Error(`the job gave up after its cutover: ${r.error}`);
      return r.toVersion === 2n && /refused on this shard/.test(r.error) ? r : undefined;
    }, 90_000);
    assert.is(stuck.phase, ReshardPhase.CUTTING_OVER, "still finishing, not failed");
    assert.match(stuck.error, "trying again");
    const incomplete = await admin.completeReshard({ jobId: "stuck_cleanup" }).then(() => undefined, (e: Error) => e.message);
    assert.match(String(incomplete), /still cleaning up its sources: .*refused on this shard/);
    assert.is((await t.connect.route({ key: "acct-1" })).shardMapVersion, 2n, "the new map stays in force");
    const [{ n }] = await t.direct(t.cluster.shards[2].nodes[0])<{ n: number }[]>`select count(*)::int as n from accounts`;
    assert.ok(n > 100, `the new shard keeps its rows: ${n}`);
    // It keeps trying: later attempts are refused the same way, and the job is still not undone.
    const refusals = () => logLines.filter((l) => l.includes("deletes are refused on this shard")).length;
    await waitFor("two more attempts", async () => {
      const r = (await admin.getReshard({ jobId: "stuck_cleanup" })).reshard!;
      assert.is(r.phase, ReshardPhase.CUTTING_OVER);
      const [{ rows }] = await t.direct(t.cluster.shards[2].nodes[0])<{ rows: number }[]>`select count(*)::int as rows from accounts`;
      assert.ok(rows >= n, "nothing removed from the new owner");
      return refusals() >= 3 && transfers > 20 ? true : undefined;
    }, 30_000);
    for (const sql of sources) await sql.unsafe("drop trigger refuse_delete on accounts");
    await waitFor("the job to finish", async () => {
      const r = (await admin.getReshard({ jobId: "stuck_cleanup" })).reshard!;
      return r.phase === ReshardPhase.DONE ? r : undefined;
    }, 60_000);
    assert.is((await admin.completeReshard({ jobId: "stuck_cleanup" })).reshard?.phase, ReshardPhase.DONE);
  } finally {
    stop.now = true;
    clearInterval(watcher);
  }
  const failed = await writer;
  assert.is(failed && String(failed), undefined, "no transfer failed but for a retryable reason");
  const { owners, total } = await accountsOnShards(t);
  assert.is(owners.size, demoAccountCount);
  for (const [key, where] of owners) {
    assert.is(where.length, 1, `${key} on one shard`);
    if ((await t.connect.route({ key })).shard !== where[0]) assert.unreachable(`${key} is on ${where[0]}, Route says otherwise`);
  }
  assert.is(total, BigInt(demoAccountCount * demoStartingBalance), "the money is all there");
});

test.run();
