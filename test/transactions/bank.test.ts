// A bank, Jepsen style: 1,000 accounts over 4 shards, 8 clients doing random transfers for a fixed
// count, while the router is SIGKILLed at every two-phase-commit failpoint and restarted, and one
// shard's postgres is restarted once. Clients retry with the same request_id, a bounded number of
// times and only on the codes a crash or restart can cause (unavailable, aborted, deadline_exceeded);
// any other code fails the test. The load goes on until every failpoint has killed a router.
// Afterwards: money is conserved, nothing is negative, every acknowledged transfer is applied exactly
// once (balances equal what the acknowledged outcomes imply), replays are replays, and no prepared
// transaction is left on any shard.
import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
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

interface Acknowledged { from: string; to: string; amount: bigint; requestId: string; transactionId: string }

test.before(hook(async () => {
  t = await startTestRouter({ shards: 4, transactions: { ...transactions, recoveryIntervalMs: 600_000, inDoubtGraceMs: 600_000 } });
  await seedDemoAccounts(t.router.planner);
}));
test.after(hook(async () => {
  await router?.kill("SIGKILL");
  await t?.stop();
}));

/** What a crashed router, a restarted shard or a lock wait may answer: retried with the same request_id. */
const retryable = new Set([Code.Unavailable, Code.Aborted, Code.DeadlineExceeded]);

test("money is conserved and every acknowledged transfer applies exactly once through crashes", async () => {
  router = await startRouterProcess(t.cluster, { failpoints: crashes[0], transactions });
  let incarnation = 0;
  let shardRestarted = false;
  const restarts: string[] = [];
  const unexpectedExits: string[] = [];
  const acknowledged: Acknowledged[] = [];
  let rejected = 0;
  let attempted = 0;
  let replaysChecked = 0;
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
  const transferOnce = async (from: string, to: string, amount: bigint, requestId: string) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await router.client.transfer({ fromKey: from, toKey: to, amount, requestId }, { timeoutMs: 10_000 });
      } catch (err) {
        const e = ConnectError.from(err);
        if (!retryable.has(e.code)) throw e;
        if (attempt >= maxAttempts) throw new Error(`transfer ${requestId}: no definite answer after ${attempt} attempts; last: ${e.message}`);
        await new Promise((r) => setTimeout(r, 20)); // router restarting or shard down: retry, same id
      }
    }
  };
  const allFired = () => incarnation >= crashes.length;
  const victim = t.cluster.shards[2].nodes[0];
  const startedAt = async () => (await t.direct(victim)`select pg_postmaster_start_time()::text as at`)[0].at as string;
  const victimStartedBefore = await startedAt();

  const work = Array.from({ length: clients }, async (_, c) => {
    for (let i = 0; i < maxTransfersPerClient && (i < transfersPerClient || !allFired()); i++) {
      const from = `acct-${random(accounts)}`;
      let to = `acct-${random(accounts)}`;
      if (to === from) to = `acct-${(Number(from.slice(5)) + 1) % accounts}`;
      const amount = BigInt(1 + random(1200)); // sometimes more than the balance
      const requestId = `${c}-${i}-${randomUUID()}`;
      try {
        const res = await transferOnce(from, to, amount, requestId);
        acknowledged.push({ from, to, amount, requestId, transactionId: res.transactionId });
        if (i % 10 === 3) { // a late duplicate of an acknowledged request is a replay, not a new transfer
          const again = await transferOnce(from, to, amount, requestId);
          assert.ok(again.replayed, `replay of ${requestId}`);
          assert.is(again.transactionId, res.transactionId);
          replaysChecked++;
        }
      } catch (err) {
        if (!(err instanceof ConnectError) || err.code !== Code.FailedPrecondition) throw err;
        rejected++;
      }
      attempted++;
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
  await waitFor("no prepared transaction on any shard", async () => {
    for (const shard of t.cluster.shards) {
      const [{ c }] = await t.direct(shard.nodes[0])`select count(*)::int as c from pg_prepared_xacts`;
      if (c > 0) return undefined;
    }
    return true;
  }, 30_000);

  const expected = new Map<string, bigint>();
  for (let i = 0; i < accounts; i++) expected.set(`acct-${i}`, 1000n);
  for (const a of acknowledged) {
    expected.set(a.from, expected.get(a.from)! - a.amount);
    expected.set(a.to, expected.get(a.to)! + a.amount);
  }
  const actual = new Map<string, bigint>();
  let applied = 0;
  for (const shard of t.cluster.shards) {
    const sql = t.direct(shard.nodes[0]);
    for (const r of await sql`select id, balance::text as balance from accounts`) actual.set(r.id, BigInt(r.balance));
    const [{ n }] = await sql`select count(*)::int as n from shardrouter.requests`;
    applied += n;
  }
  const total = [...actual.values()].reduce((s, b) => s + b, 0n);
  assert.is(total, 1_000_000n, "money is conserved");
  assert.ok([...actual.values()].every((b) => b >= 0n), "no balance is negative");
  const wrong = [...expected].filter(([k, v]) => actual.get(k) !== v).slice(0, 5);
  assert.equal(wrong, [], "balances equal what the acknowledged transfers imply (each applied exactly once)");
  assert.is(applied, acknowledged.length, "one request record per acknowledged transfer");
  assert.is(acknowledged.length + rejected, attempted, "every transfer got a definite answer");
  assert.ok(replaysChecked > 0);
  console.log(`bank: ${acknowledged.length} transfers applied, ${rejected} rejected (insufficient funds), ${replaysChecked} replays, router restarts: ${restarts.join(", ")}`);
});

test.run();
