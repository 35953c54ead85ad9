// SIGTERM: the router stops accepting, lets the requests in flight finish, closes its pools, exits 0.
import * as assert from "uvu/assert";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { startRouterProcess } from "../harness/router-process.js";
import { hook, test } from "../harness/uvu.js";
import { plainRows } from "../e2e/values.js";

let t: TestRouter;
test.before(hook(async () => { t = await startTestRouter({ shards: 1 }); }));
test.after(hook(async () => { await t?.stop(); }));

test("in-flight statements finish after SIGTERM; then the process exits cleanly", async () => {
  const router = await startRouterProcess(t.cluster);
  const inFlight = router.client.executeOnShard({ key: "k", sql: "select 'finished' as s from pg_sleep(1)" });
  const direct = t.direct(t.cluster.shards[0].nodes[0]);
  await waitFor("the statement to be running on Postgres", async () => {
    const [{ n }] = await direct`select count(*)::int as n from pg_stat_activity where query like '%''finished''%pg_sleep%' and state = 'active' and pid <> pg_backend_pid()`;
    return n > 0 ? true : undefined;
  });
  router.process.kill("SIGTERM");
  const res = await inFlight;
  assert.equal(plainRows(res.result), [["finished"]]);
  assert.is(await router.exited, "exit 0");
  const after = await router.client.executeOnShard({ key: "k", sql: "select 1" }).then(() => "served", () => "refused");
  assert.is(after, "refused");
});

test.run();
