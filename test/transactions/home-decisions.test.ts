// Recovery of transactions decided by their home shard (coordinator.ts): a dead router's prepared
// transaction is committed when its home committed the decision, rolled back (with "abort" recorded on
// the home, so the home can never commit it later) when not, and never decided while the home's own
// transaction is still open: recovery waits for it and obeys what it did.
import * as assert from "uvu/assert";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { homeOf } from "../../server/transactions/transaction-id.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { startRouterProcess } from "../harness/router-process.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;

test.before(hook(async () => {
  t = await startTestRouter({ shards: 2, transactions: { inDoubtGraceMs: 200, recoveryIntervalMs: 100, lockTimeoutMs: 500 } });
  await seedDemoAccounts(t.router.planner);
}));
test.after(hook(async () => { await t?.stop(); }));

const [participant, home] = [0, 1];
const gidFor = (n: number, homeName: string) => `sr_deadbeef_${n}_h${Buffer.from(homeName).toString("hex")}`;

async function someKeyOn(shard: number): Promise<string> {
  const [{ id }] = await t.direct(t.cluster.shards[shard].nodes[0])`select id from accounts order by id limit 1`;
  return id;
}

async function balanceOf(shard: number, key: string): Promise<bigint> {
  const [{ b }] = await t.direct(t.cluster.shards[shard].nodes[0])`select balance::text as b from accounts where id = ${key}`;
  return BigInt(b);
}

async function prepareAsDeadRouter(gid: string, key: string, delta: number): Promise<void> {
  await t.asRouter(t.cluster.shards[participant].nodes[0]).begin(async (tx) => {
    await tx`update accounts set balance = balance + ${delta} where id = ${key}`;
    await tx.prepare(gid);
  });
}

async function settled(gid: string): Promise<true | undefined> {
  const [{ c }] = await t.direct(t.cluster.shards[participant].nodes[0])`select count(*)::int as c from pg_prepared_xacts where gid = ${gid}`;
  return c === 0 ? true : undefined;
}

const decisionOnHome = async (gid: string) =>
  (await t.direct(t.cluster.shards[home].nodes[0])`select decision from shardrouter.commit_decisions where gid = ${gid}`)[0]?.decision;

test("a transaction id names its home shard, whatever characters the shard's name has", () => {
  assert.is(homeOf(gidFor(1, "Shard-7.eu")), "Shard-7.eu");
  assert.is(homeOf("sr_0a1b2c3d4e_deadbeef_h5"), undefined, "an id of a router before home decisions names none");
  assert.is(homeOf("sr_0a1b2c3d4e_deadbeef_h1a"), undefined, "nor one whose counter happens to read as hex");
});

test("committed on its home: recovery commits it; undecided: recovery records abort on the home and rolls it back", async () => {
  const key = await someKeyOn(participant);
  const before = await balanceOf(participant, key);
  const homeName = t.cluster.shards[home].name;
  const [committed, undecided] = [gidFor(1, homeName), gidFor(2, homeName)];
  await t.asRouter(t.cluster.shards[home].nodes[0])`insert into shardrouter.commit_decisions (gid, decision) values (${committed}, 'commit')`;
  await prepareAsDeadRouter(committed, key, 11);
  await prepareAsDeadRouter(undecided, key, 13);
  await waitFor("recovery to settle both", async () => ((await settled(committed)) && (await settled(undecided))));
  assert.is(await balanceOf(participant, key), before + 11n, "the committed one applied, the undecided one rolled back");
  assert.is(await decisionOnHome(undecided), "abort", "the presumed abort is recorded where the home would have committed");
});

test("recovery waits for a home transaction still deciding, and obeys its commit", async () => {
  const key = await someKeyOn(participant);
  const before = await balanceOf(participant, key);
  const gid = gidFor(3, t.cluster.shards[home].name);
  // The home's own transaction has written its decision and not committed yet (a slow coordinator).
  const homeConn = await t.asRouter(t.cluster.shards[home].nodes[0]).reserve();
  try {
    await homeConn`begin`;
    await homeConn`insert into shardrouter.commit_decisions (gid, decision) values (${gid}, 'commit')`;
    await prepareAsDeadRouter(gid, key, 17);
    await waitFor("recovery to wait on the home's open decision", async () => {
      const rows = await t.direct(t.cluster.shards[home].nodes[0])`
        select 1 from pg_stat_activity where wait_event_type = 'Lock' and query like '%commit_decisions%'`;
      return rows.length ? true : undefined;
    });
    assert.is(await settled(gid), undefined, "still prepared while the home decides");
    await homeConn`commit`;
  } finally {
    homeConn.release();
  }
  await waitFor("recovery to commit it", () => settled(gid));
  assert.is(await balanceOf(participant, key), before + 17n);
  assert.is(await decisionOnHome(gid), "commit");
});

test("three routers recovering at once settle each transaction once, as its home decided", async () => {
  const key = await someKeyOn(participant);
  const before = await balanceOf(participant, key);
  const homeName = t.cluster.shards[home].name;
  let expected = before;
  const gids: string[] = [];
  for (let i = 0; i < 12; i++) {
    const gid = gidFor(100 + i, homeName);
    gids.push(gid);
    if (i % 2 === 0) {
      await t.asRouter(t.cluster.shards[home].nodes[0])`insert into shardrouter.commit_decisions (gid, decision) values (${gid}, 'commit')`;
      expected += BigInt(i + 1);
    }
    await prepareAsDeadRouter(gid, key, i + 1);
  }
  // The in-process router recovers too (every 100 ms): three routers race for every transaction.
  const transactions = { inDoubtGraceMs: 200, recoveryIntervalMs: 50, lockTimeoutMs: 500 };
  const others = await Promise.all([startRouterProcess(t.cluster, { transactions }), startRouterProcess(t.cluster, { transactions })]);
  try {
    await waitFor("every transaction settled", async () => {
      for (const gid of gids) if (!(await settled(gid))) return undefined;
      return true;
    }, 20_000);
  } finally {
    await Promise.all(others.map((r) => r.kill("SIGINT")));
  }
  assert.is(await balanceOf(participant, key), expected, "the committed half applied once each, the rest rolled back");
  for (const [i, gid] of gids.entries()) assert.is(await decisionOnHome(gid), i % 2 === 0 ? "commit" : "abort", gid);
});

test.run();
