// The router is SIGKILLed at each step of two-phase commit (a failpoint), then restarted. Recovery
// must settle the transaction to exactly one outcome, and a retry with the same request_id must
// agree with it: rolled back before the decision, committed after it.
import { randomUUID } from "node:crypto";
import * as assert from "uvu/assert";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { startRouterProcess } from "../harness/router-process.js";
import { hook, test } from "../harness/uvu.js";
import { plainRows } from "../e2e/values.js";

let t: TestRouter;
const transactions = { inDoubtGraceMs: 300, recoveryIntervalMs: 100, lockTimeoutMs: 300 };
const str = (value: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value } });

async function balance(key: string): Promise<bigint> {
  const r = await t.connect.executeOnShard({ key, sql: "select balance from accounts where id = $1", params: [str(key)] });
  return plainRows(r.result)[0][0] as bigint;
}

async function noPreparedTransactions(): Promise<true | undefined> {
  for (const shard of t.cluster.shards) {
    const [{ c }] = await t.direct(shard.nodes[0])`select count(*)::int as c from pg_prepared_xacts`;
    if (c > 0) return undefined;
  }
  return true;
}

test.before(hook(async () => {
  // The in-process router here only seeds and reads; its own recovery is slow so the restarted
  // router process is the one that settles what its predecessor left.
  t = await startTestRouter({ shards: 4, transactions: { ...transactions, recoveryIntervalMs: 600_000, inDoubtGraceMs: 600_000 } });
  await seedDemoAccounts(t.router.planner);
}));
test.after(hook(async () => { await t?.stop(); }));

const cases = [
  { failpoint: "before_prepare", committed: false },
  { failpoint: "after_prepare", committed: false },
  { failpoint: "after_decision", committed: true },
  { failpoint: "after_first_commit", committed: true },
];

for (const [i, { failpoint, committed }] of cases.entries()) {
  test(`crash at ${failpoint}: recovered as ${committed ? "committed" : "rolled back"}, and a retry agrees`, async () => {
    // A fresh pair of accounts on different shards for each case.
    const from = `acct-${100 + i * 2}`;
    let to = `acct-${101 + i * 2}`;
    for (let k = 500 + i * 50; (await t.connect.route({ key: to })).shard === (await t.connect.route({ key: from })).shard; k++) to = `acct-${k}`;
    const before = [await balance(from), await balance(to)];
    const requestId = randomUUID();

    const doomed = await startRouterProcess(t.cluster, { failpoints: failpoint, transactions });
    const failed = await doomed.client.transfer({ fromKey: from, toKey: to, amount: 10n, requestId }).then(() => undefined, (e) => e);
    assert.ok(failed, "the client saw the crash as an error");
    assert.is(await doomed.exited, "SIGKILL");
    assert.match(doomed.output(), `failpoint ${failpoint}@1`);

    const restarted = await startRouterProcess(t.cluster, { transactions });
    try {
      await waitFor("recovery to leave no prepared transaction", noPreparedTransactions, 20_000);
      const moved = committed ? 10n : 0n;
      assert.equal([await balance(from), await balance(to)], [before[0] - moved, before[1] + moved], "recovered outcome");

      const retry = await restarted.client.transfer({ fromKey: from, toKey: to, amount: 10n, requestId });
      assert.is(retry.replayed, committed, "a committed transfer is replayed; a rolled-back one runs now");
      assert.equal([await balance(from), await balance(to)], [before[0] - 10n, before[1] + 10n], "moved exactly once");
    } finally {
      await restarted.kill("SIGINT");
    }
  });
}

test.run();
