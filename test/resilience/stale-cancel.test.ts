// A cancel request names a backend, not a statement: if the router freed a connection before its
// cancel request had arrived, the request would cancel the next caller's statement on it. Here one
// shard fails at once, so ExecuteOnAll cancels the other shard's statement, which has (nearly) always
// finished already. The next statements (as many as the pool has connections, so one of them lands
// on that same backend) must not be cancelled. tools/patch-postgres.mjs patch 5 holds the connection
// until the request has arrived; the router holds the statement's slot as long.
import { Code, ConnectError } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
let onlyThere: string; // a key on the shard that has the table
test.before(hook(async () => {
  t = await startTestRouter({ shards: 2, pool: { max: 4 } });
  const [a] = t.cluster.shards;
  await t.direct(a.nodes[0]).unsafe("create table only_here (x int)");
  for (let i = 0; ; i++) {
    if ((await t.router.planner.route(`k${i}`)).shard.name === a.name) { onlyThere = `k${i}`; break; }
  }
}));
test.after(hook(async () => { await t?.stop(); }));

test("a statement right after a cancelled sibling on the same connection is not cancelled", async () => {
  let cancelledNext = 0;
  for (let i = 0; i < 150; i++) {
    const err = await t.grpc.executeOnAll({ sql: "select count(*) from only_here" }).then(() => undefined, (e) => ConnectError.from(e));
    assert.is(err?.code, Code.InvalidArgument, "the other shard has no such table");
    const next = await Promise.all([0, 1, 2, 3].map(() =>
      t.grpc.executeOnShard({ key: onlyThere, sql: "select pg_sleep(0.002), 'next' as v" }).then(() => undefined, (e) => ConnectError.from(e))));
    for (const err of next) {
      if (!err) continue;
      assert.match(err.rawMessage, "57014");
      cancelledNext++;
    }
  }
  assert.is(cancelledNext, 0, "statements cancelled by a request meant for an earlier one");
});

test.run();
