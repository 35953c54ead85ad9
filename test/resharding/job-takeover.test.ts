// A reshard job outlives the router that runs it: the job is started on a router process, which is
// SIGKILLed while it copies; once its lease runs out another router takes the job over, resumes it
// from what the nodes hold (the dead router's slot included) and finishes it: copy, verify, cutover,
// clean-up. Writes go on throughout through the surviving router; nothing is lost or doubled.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as assert from "uvu/assert";
import { AdminService, ReshardPhase } from "../../gen/shardrouter/v1/admin_pb.js";
import { devConfig } from "../../server/dev-cluster/dev-config.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { startRouterProcess } from "../harness/router-process.js";
import { hook, test } from "../harness/uvu.js";
import { seedAccounts } from "../harness/accounts.js";

let t: TestRouter;
const accounts = 30_000;

test.before(hook(async () => {
  t = await startTestRouter({ shards: 3, spareShards: 1 });
  await seedAccounts(t, accounts, 100);
}));
test.after(hook(async () => { await t?.stop(); }));

test("the job's router is SIGKILLed while copying: another router takes the job over when the lease runs out and finishes it", async () => {
  const base = devConfig(t.cluster, { port: 0 }) as Record<string, Record<string, unknown>>;
  const doomed = await startRouterProcess(t.cluster, {
    config: { ...base, transactions: { routerId: "doomed" }, resharding: { ...base.resharding, leaseMs: 1500 } },
  });
  const survivor = createClient(AdminService, createConnectTransport({ baseUrl: t.router.url, httpVersion: "1.1" }));
  let inserted = 0;
  const stop = { now: false };
  const writer = (async () => {
    for (let i = 0; !stop.now; i++) {
      const key = `new-${i}`;
      for (;;) {
        try {
          await t.connect.executeOnShard({ key, sql: "insert into accounts values ($1, 7) on conflict do nothing", params: [{ kind: { case: "stringValue", value: key } }] });
          break;
        } catch (err) {
          if (!(err instanceof ConnectError) || (err.code !== Code.Unavailable && err.code !== Code.Aborted)) throw err;
        }
      }
      inserted = i + 1;
    }
  })();
  try {
    const started = await createClient(AdminService, createConnectTransport({ baseUrl: doomed.url, httpVersion: "1.1" }))
      .startReshard({ jobId: "takeover", addShards: [{ name: "shard-2", weight: 1 }], autoCutover: true });
    assert.is(started.reshard?.runner, "doomed");
    // Killed once its copy is under way: its slot exists (and its walsender holds it).
    await waitFor("the copy to start", async () => {
      const rows = await t.direct(t.cluster.shards[0].nodes[0])`select 1 from pg_replication_slots where slot_name like 'shardrouter_takeover_%'`;
      return rows.length ? true : undefined;
    }, 20_000);
    assert.is(await doomed.kill("SIGKILL"), "SIGKILL");
    const done = await waitFor("the job to be taken over and finished", async () => {
      const r = (await survivor.getReshard({ jobId: "takeover" })).reshard!;
      if (r.phase === ReshardPhase.FAILED) throw new Error(`the job failed: ${r.error}`);
      return r.phase === ReshardPhase.DONE ? r : undefined;
    }, 120_000);
    assert.is(done.toVersion, 2n);
    assert.is(done.verify?.mismatches, 0n);
    assert.equal(done.cutover?.acknowledged, [t.router.routerId], "the survivor ran the cutover; the dead router was not waited for");
  } finally {
    stop.now = true;
    await writer;
    await doomed.kill("SIGKILL");
  }
  const owners = new Map<string, number>();
  for (const s of t.cluster.shards) {
    for (const r of await t.direct(s.nodes[0])<{ id: string }[]>`select id from accounts`) owners.set(r.id, (owners.get(r.id) ?? 0) + 1);
  }
  assert.is(owners.size, accounts + inserted, "every account, old and new");
  assert.equal([...owners].filter(([, n]) => n > 1).slice(0, 3), [], "none on two shards");
  for (const s of t.cluster.shards) {
    const slots = await t.direct(s.nodes[0])`select slot_name from pg_replication_slots where slot_name like 'shardrouter_%'`;
    assert.is(slots.length, 0, `no slot left on ${s.name}`);
  }
});

test.run();
