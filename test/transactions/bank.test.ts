// A bank, Jepsen style: 1,000 accounts over 4 shards, 8 clients doing random transfers for a fixed
// count, while the router is SIGKILLed at every two-phase-commit failpoint and restarted, and one
// shard's postgres is restarted once. Clients retry with the same request_id, a bounded number of
// times and only on the codes a crash or restart can cause (unavailable, aborted, deadline_exceeded);
// any other code fails the test. The load goes on until every failpoint has killed a router.
// Afterwards: money is conserved, nothing is negative, every acknowledged transfer is applied exactly
// once (balances equal what the acknowledged outcomes imply), replays are replays, and no prepared
// transaction is left on any shard.
import { randomUUID } from "node:crypto";
import * as assert from "uvu/assert";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { BankLedger, bankViolations, preparedTransactions, randomTransfer, readBank } from "../harness/bank.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { type RouterProcess, startRouterProcess } from "../harness/router-process.js";
import { hook, test } from "../harness/uvu.js";

const clients = 8;
const transfersPerClient = 60;
/** The load stops here even if a failpoint never fired (the test then fails and says which). */
const maxTransfersPerClient = 240;
const maxAttempts = 200;
const accounts = 1000;
const transactions = { inDoubtGraceMs: 300, recoveryIntervalMs: 100, lockTimeoutMs: 500 };
// Each router incarnation dies at one failpoint after some transfers; the last one lives.
const crashes = ["after_prepare@12", "after_decision@12", "after_first_commit@12", "before_prepare@12"];

let t: TestRouter;
let router: RouterProcess;

test.before(hook(async () => {
  t = await startTestRouter({ shards: 4, transactions: { ...transactions, recoveryIntervalMs: 600_000, inDoubtGraceMs: 600_000 } });
  await seedDemoAccounts(t.router.planner);
}));
test.after(hook(async () => {
  await router?.kill("SIGKILL");
  await t?.stop();
}));

test("money is conserved and every acknowledged transfer applies exactly once through crashes", async () => {
  router = await startRouterProcess(t.cluster, { failpoints: crashes[0], transactions });
  let incarnation = 0;
  let shardRestarted = false;
  const restarts: string[] = [];
  const unexpectedExits: string[] = [];
  const ledger = new BankLedger();
  let done = false;

  // The supervisor: whenever the router dies, start the next incarnation (with the next failpoint).
  const supervisor = (async () => {
    while (!done) {
      const how = await Promise.race([router.exited, new Promise<string>((r) => setTimeout(() => r(""), 100))]);
      if (!how || done) continue;
      restarts.push(`${crashes[incarnation] ?? "no failpoint"} → ${how}`);
      if (how !== "SIGKILL" || !crashes[incarnation]) unexpectedExits.push(`${how}:\n${router.output().slice(-3000)}`);
      incarnation++;
      router = await startRouterProcess(t.cluster, { failpoints: crashes[incarnation] ?? "", transactions });
    }
  })();

  let rng = 42;
  const random = (n: number) => ((rng = (rng * 1103515245 + 12345) % 2147483648) % n);
  const allFired = () => incarnation >= crashes.length;
  const victim = t.cluster.shards[2].nodes[0];
  const shards = t.cluster.shards.map((s) => ({ name: s.name, sql: t.direct(s.nodes[0]) }));
  const startedAt = async () => (await shards[2].sql`select pg_postmaster_start_time()::text as at`)[0].at as string;
  const victimStartedBefore = await startedAt();

  const work = Array.from({ length: clients }, async (_, c) => {
    for (let i = 0; i < maxTransfersPerClient && (i < transfersPerClient || !allFired()); i++) {
      // A late duplicate of an acknowledged request is a replay, not a new transfer.
      await ledger.transfer(randomTransfer(random, accounts, `${c}-${i}-${randomUUID()}`), { client: () => router.client, maxAttempts, replay: i % 10 === 3 });
      if (c === 0 && i === transfersPerClient / 2 && !shardRestarted) {
        shardRestarted = true; // one shard's postgres goes down hard and comes back, mid-load
        await t.cluster.stopNode(victim.name, "immediate");
        await t.cluster.startNode(victim.name);
      }
    }
  });
  await Promise.all(work).finally(() => { done = true; });
  await supervisor;

  assert.equal(unexpectedExits, [], "the router only ever died at a failpoint");
  // Each incarnation was armed with one failpoint and died of SIGKILL, which only a failpoint sends.
  assert.equal(restarts, crashes.map((f) => `${f} → SIGKILL`), "every failpoint killed a router once, in order");
  assert.not.equal(await startedAt(), victimStartedBefore, "the shard's postgres was really restarted");
  let left: string[] = [];
  await waitFor("no prepared transaction on any shard", async () => ((left = await preparedTransactions(shards)).length === 0 ? true : undefined), 30_000)
    .catch((err) => { throw new Error(`${err.message}; still prepared: ${left.join(", ")}`); });

  assert.equal(bankViolations(await readBank(shards.map((s) => s.sql)), ledger, { accounts, startingBalance: 1000n }), [], "the bank's invariants");
  assert.ok(ledger.replaysChecked > 0);
  console.log(`bank: ${ledger.acknowledged.length} transfers applied, ${ledger.rejected} rejected (insufficient funds), ${ledger.replaysChecked} replays, router restarts: ${restarts.join(", ")}`);
});

test.run();
