// A flood beyond a node's capacity (pool max running + maxWaiting queued) is refused at once with
// RESOURCE_EXHAUSTED instead of queueing without bound; what was admitted completes. Observed from
// Postgres, not from the router's own counters: the admitted statements block on an advisory lock the
// test holds, so the node's capacity is full for as long as the test wants.
import { Code, ConnectError } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import postgres from "postgres";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
let admin: postgres.Sql;
const max = 2;
const maxWaiting = 6;
test.before(hook(async () => {
  t = await startTestRouter({ shards: 1, pool: { max, maxWaiting } });
  admin = t.direct(t.cluster.shards[0].nodes[0]);
}));
test.after(hook(async () => { await t?.stop(); }));

/** The router's backends that Postgres shows waiting for the test's lock. */
async function blockedOnPostgres(): Promise<number> {
  const [{ n }] = await admin<{ n: number }[]>`
    select count(*)::int as n from pg_stat_activity
    where application_name = 'shardrouter' and wait_event_type = 'Lock' and query like '%pg_advisory_xact_lock_shared(4242)%'`;
  return n;
}

test("beyond running + waiting capacity calls are refused at once; Postgres never runs more than pool.max; the admitted complete", async () => {
  const holder = await admin.reserve();
  await holder`select pg_advisory_lock(4242)`;
  let admitted: Promise<string>[] = [];
  try {
    admitted = Array.from({ length: max + maxWaiting }, () =>
      t.connect.executeOnShard({ key: "k", sql: "select pg_advisory_xact_lock_shared(4242)" }, { timeoutMs: 60_000 })
        .then(() => "ok", (e) => Code[ConnectError.from(e).code]));
    await waitFor("pool.max statements blocked on Postgres", async () => ((await blockedOnPostgres()) === max ? true : undefined));
    // Capacity is full (max running, maxWaiting queued): more are refused without waiting.
    const extra = await Promise.all(Array.from({ length: 10 }, () =>
      t.connect.executeOnShard({ key: "k", sql: "select 1" }, { timeoutMs: 60_000 }).then(() => undefined, (e) => ConnectError.from(e))));
    for (const err of extra) {
      assert.is(err?.code, Code.ResourceExhausted, `refused while full: ${err?.message}`);
      assert.match(err!.rawMessage, "overloaded");
    }
    assert.is(await blockedOnPostgres(), max, "Postgres still runs exactly pool.max of the router's statements");
  } finally {
    await holder`select pg_advisory_unlock(4242)`;
    holder.release();
  }
  assert.equal(await Promise.all(admitted), Array(max + maxWaiting).fill("ok"), "every admitted statement completed");
  const after = await t.connect.executeOnShard({ key: "k", sql: "select 1 as one" });
  assert.is(after.result?.rows.length, 1, "capacity is back once the queue drained");
});

test.run();
