// Two-phase commit under roles: only the role that prepared a transaction (or a superuser) may COMMIT
// or ROLLBACK PREPARED it, and the router's own login is neither. Two identities with their own roles
// each leave a cross-shard transfer prepared (the router SIGKILLed right after the home committed, at
// the failpoint after_decision); the next router settles both, each as its owner, and the home's
// decision names the role that made it.
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import * as assert from "uvu/assert";
import { RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import { devConfig } from "../../server/dev-cluster/dev-config.js";
import { homeOf } from "../../server/transactions/transaction-id.js";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { startRouterProcess } from "../harness/router-process.js";
import { test } from "../harness/uvu.js";
import { apiKey, clientFor, ensureRole } from "./fixtures.js";

let t: TestRouter;
const alpha = apiKey("alpha");
const beta = apiKey("beta");
const passwords = { alpha_rw: "alpha-Pa55-1", beta_rw: "beta-Pa55-2" };
const idle = { recoveryIntervalMs: 600_000, inDoubtGraceMs: 600_000 };

test.before(async () => {
  t = await startTestRouter({ shards: 3, transactions: idle });
  await seedDemoAccounts(t.router.planner);
  for (const s of t.cluster.shards) {
    for (const [role, password] of Object.entries(passwords)) await ensureRole(t.direct(s.nodes[0]), role, password, "select, update");
  }
});
test.after(async () => { await t?.stop(); });

const config = (transactions: object) => ({
  ...(devConfig(t.cluster, { transactions }) as object),
  auth: {
    identities: [
      { name: "alpha", apiKeys: [{ id: "a", sha256: alpha.sha256 }], login: { user: "alpha_rw", password: passwords.alpha_rw }, rpcs: ["RouterService/*"] },
      { name: "beta", apiKeys: [{ id: "b", sha256: beta.sha256 }], login: { user: "beta_rw", password: passwords.beta_rw }, rpcs: ["RouterService/*"] },
    ],
  },
});

async function prepared(): Promise<{ gid: string; owner: string }[]> {
  const all: { gid: string; owner: string }[] = [];
  for (const s of t.cluster.shards) all.push(...await t.direct(s.nodes[0])<{ gid: string; owner: string }[]>`select gid, owner::text from pg_prepared_xacts`);
  return all;
}

async function crossShardPair(from: number): Promise<[string, string]> {
  const a = `acct-${from}`;
  for (let k = from + 1; ; k++) if ((await t.connect.route({ key: `acct-${k}` })).shard !== (await t.connect.route({ key: a })).shard) return [a, `acct-${k}`];
}

async function balances(keys: string[]): Promise<bigint[]> {
  return Promise.all(keys.map(async (key) => {
    const { shard } = await t.connect.route({ key });
    const node = t.cluster.shards.find((s) => s.name === shard)!.nodes[0];
    return BigInt((await t.direct(node)`select balance::text as b from accounts where id = ${key}`)[0].b);
  }));
}

test("transactions prepared under two roles are committed by recovery after a router crash, each as its owner", async () => {
  const pairs = [await crossShardPair(10), await crossShardPair(40)];
  const before = await Promise.all(pairs.map(balances));
  for (const [i, token] of [alpha.key, beta.key].entries()) {
    const doomed = await startRouterProcess(t.cluster, { config: config(idle), failpoints: "after_decision" });
    const [from, to] = pairs[i];
    const failed = await clientFor(RouterService, doomed.url, "connect-json", { token }).transfer({ fromKey: from, toKey: to, amount: 7n, requestId: randomUUID() }).then(() => undefined, (e) => e);
    assert.ok(failed, "the caller saw the crash");
    assert.is(await doomed.exited, "SIGKILL");
  }
  const left = await prepared();
  assert.equal(left.map((p) => p.owner).sort(), ["alpha_rw", "beta_rw"], "one transaction prepared under each role");

  const recovering = await startRouterProcess(t.cluster, { config: config({ recoveryIntervalMs: 100, inDoubtGraceMs: 0 }) });
  try {
    await waitFor("recovery to settle both", async () => ((await prepared()).length === 0 ? true : undefined), 20_000);
  } finally {
    await recovering.kill("SIGINT");
  }
  const after = await Promise.all(pairs.map(balances));
  for (const i of [0, 1]) assert.equal(after[i], [before[i][0] - 7n, before[i][1] + 7n], `transfer ${i} committed everywhere`);
  // Each home's decision records the role that committed it.
  const decided: string[] = [];
  for (const sh of t.cluster.shards) decided.push(...(await t.direct(sh.nodes[0])<{ r: string }[]>`select prepared_by as r from shardrouter.commit_decisions where decision = 'commit'`).map((x) => x.r));
  assert.equal(decided.sort(), ["alpha_rw", "beta_rw"]);
});

test("an identity revoked by a reload while its transaction is in doubt: recovery still settles it as that role", async () => {
  const [from, to] = await crossShardPair(160);
  const before = await balances([from, to]);
  const settler = await startRouterProcess(t.cluster, { config: config({ recoveryIntervalMs: 100, inDoubtGraceMs: 4000 }) });
  try {
    const doomed = await startRouterProcess(t.cluster, { config: config(idle), failpoints: "after_decision" });
    await clientFor(RouterService, doomed.url, "connect-json", { token: alpha.key }).transfer({ fromKey: from, toKey: to, amount: 4n, requestId: randomUUID() }).catch(() => {});
    assert.is(await doomed.exited, "SIGKILL");
    assert.equal((await prepared()).map((p) => p.owner), ["alpha_rw"]);
    // alpha is revoked while its transaction waits out the grace period (4 s from its PREPARE).
    const withoutAlpha = config({ recoveryIntervalMs: 100, inDoubtGraceMs: 4000 }) as { auth: { identities: { name: string }[] } };
    withoutAlpha.auth.identities = withoutAlpha.auth.identities.filter((i) => i.name !== "alpha");
    writeFileSync(settler.configFile, JSON.stringify({ ...withoutAlpha, listen: { host: "127.0.0.1", port: Number(new URL(settler.url).port) } }));
    settler.process.kill("SIGHUP");
    await waitFor("the reload", () => (settler.output().includes("auth reloaded") ? true : undefined));
    assert.ok((await prepared()).length === 1, "still prepared when alpha was revoked");
    await waitFor("recovery to settle it", async () => ((await prepared()).length === 0 ? true : undefined), 20_000);
  } finally {
    await settler.kill("SIGINT");
  }
  assert.equal(await balances([from, to]), [before[0] - 4n, before[1] + 4n], "committed everywhere");
});

test("the router's own login cannot finish another role's prepared transaction (why recovery logs in as the owner)", async () => {
  const node = t.cluster.shards[0].nodes[0];
  const gid = "sr_owner_check_h736861726430";
  const asAlpha = (await import("postgres")).default({ host: node.host, port: node.port, database: node.database, user: "alpha_rw", password: passwords.alpha_rw, max: 1, onnotice: () => {} });
  try {
    await asAlpha.begin(async (tx) => { await tx`update accounts set balance = balance where id = 'acct-1'`; await tx.unsafe(`prepare transaction '${gid}'`); });
  } finally {
    await asAlpha.end({ timeout: 5 });
  }
  const err = await t.asRouter(node).unsafe(`rollback prepared '${gid}'`).then(() => undefined, (e) => e);
  assert.is(err?.code, "42501", "permission denied to finish prepared transaction");
  await t.direct(node).unsafe(`rollback prepared '${gid}'`);
});

test("a caller's function that switches role inside its transaction does not change who owns the prepared transaction", async () => {
  // alpha_rw may become alpha_group; a function of the app does SET LOCAL ROLE (the guard refuses it
  // written out, but not inside a function, which runs isolated). Without a RESET ROLE before PREPARE,
  // alpha_group would own the prepared transaction, and only it (or a superuser) could finish it.
  for (const s of t.cluster.shards) {
    const sql = t.direct(s.nodes[0]);
    await sql.unsafe("do $$ begin if not exists (select from pg_roles where rolname = 'alpha_group') then create role alpha_group; end if; end $$");
    await sql.unsafe("grant alpha_group to alpha_rw");
    await sql.unsafe("grant select, update on accounts to alpha_group");
    await sql.unsafe("create or replace function public.become_group() returns text language plpgsql as $$ begin set local role alpha_group; return current_user; end $$");
  }
  const [from, to] = await crossShardPair(100);
  const before = await balances([from, to]);
  const router = await startRouterProcess(t.cluster, { config: config(idle) });
  try {
    const client = clientFor(RouterService, router.url, "connect-json", { token: alpha.key });
    const res = await client.executeTransaction({ requestId: randomUUID(), statements: [
      { key: from, sql: "select public.become_group()" },
      { key: from, sql: "update accounts set balance = balance - 3 where id = $1", params: [{ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value: from } }] },
      { key: to, sql: "select public.become_group()" },
      { key: to, sql: "update accounts set balance = balance + 3 where id = $1", params: [{ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value: to } }] },
    ] });
    assert.ok(res.twoPhase);
    assert.equal(res.results.filter((r) => r.result!.rows.length).map((r) => r.result!.rows[0].values[0].kind.value), ["alpha_group", "alpha_group"], "the function did switch");
  } finally {
    await router.kill("SIGINT");
  }
  assert.equal(await prepared(), [], "nothing left prepared: the caller's login committed it");
  assert.equal(await balances([from, to]), [before[0] - 3n, before[1] + 3n]);
});

test("an identity can neither read nor change another's idempotency records; the other's retry stays a replay", async () => {
  const [from, to] = await crossShardPair(130);
  const router = await startRouterProcess(t.cluster, { config: config(idle) });
  const str = (value: string) => ({ $typeName: "shardrouter.v1.Value" as const, kind: { case: "stringValue" as const, value } });
  try {
    const asAlpha = clientFor(RouterService, router.url, "connect-json", { token: alpha.key });
    const asBeta = clientFor(RouterService, router.url, "connect-json", { token: beta.key });
    const req = { fromKey: from, toKey: to, amount: 2n, requestId: `alpha-${randomUUID()}` };
    const first = await asAlpha.transfer(req);
    const homeKey = [from, to].sort()[0];
    const denied = await asBeta.executeOnShard({ key: homeKey, sql: "select response from shardrouter.requests" }).then(() => undefined, (e) => e);
    assert.is(denied?.code, 7 /* PermissionDenied */, "no privilege on the table");
    const seen = await asBeta.executeOnShard({ key: homeKey, sql: "select * from shardrouter.find_request($1, $2)", params: [str(homeKey), str(req.requestId)] });
    assert.is(seen.result!.rows.length, 0, "another login's record is not found");
    await asBeta.executeOnShard({ key: homeKey, sql: "select shardrouter.store_response($1, $2, '\\x00')", params: [str(homeKey), str(req.requestId)] });
    const again = await asAlpha.transfer(req);
    assert.ok(again.replayed, "still a replay");
    assert.is(again.transactionId, first.transactionId);
    assert.is(again.fromBalance, first.fromBalance, "the stored answer, untouched");
  } finally {
    await router.kill("SIGINT");
  }
});

test("a decision recorded in another role's name is not trusted: the transaction stays in doubt, nothing is committed", async () => {
  const [from, to] = await crossShardPair(70);
  const before = await balances([from, to]);
  const doomed = await startRouterProcess(t.cluster, { config: config(idle), failpoints: "after_prepare" });
  await clientFor(RouterService, doomed.url, "connect-json", { token: alpha.key }).transfer({ fromKey: from, toKey: to, amount: 7n, requestId: randomUUID() }).catch(() => {});
  assert.is(await doomed.exited, "SIGKILL");
  const [victim] = await prepared();
  assert.is(victim.owner, "alpha_rw");
  const homeKey = [from, to].sort()[0]; // the home is the least key's shard
  assert.is((await t.connect.route({ key: homeKey })).shard, homeOf(victim.gid));

  const recovering = await startRouterProcess(t.cluster, { config: config({ recoveryIntervalMs: 100, inDoubtGraceMs: 600_000 }) });
  try {
    const asBeta = clientFor(RouterService, recovering.url, "connect-json", { token: beta.key });
    // beta may insert decisions (its own home commits do), but never in another role's name …
    const forged = await asBeta.executeOnShard({ key: homeKey, sql: "insert into shardrouter.commit_decisions (gid, decision, prepared_by) values ($1, 'commit', 'alpha_rw')", params: [{ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value: victim.gid } }] }).then(() => undefined, (e) => e);
    assert.is(forged?.code, 7 /* PermissionDenied */, "prepared_by is not beta's to write");
    // … not even where an operator granted it INSERT on the whole table: the database writes the
    // role that inserted, whatever the statement says, and a decision in beta's name does not decide
    // alpha's transaction.
    const homeNode = t.cluster.shards.find((x) => x.name === homeOf(victim.gid))!.nodes[0];
    await t.direct(homeNode).unsafe("grant insert on shardrouter.commit_decisions to beta_rw");
    await asBeta.executeOnShard({ key: homeKey, sql: "insert into shardrouter.commit_decisions (gid, decision, prepared_by) values ($1, 'commit', 'alpha_rw')", params: [{ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value: victim.gid } }] });
    const [row] = await t.direct(homeNode)`select prepared_by from shardrouter.commit_decisions where gid = ${victim.gid}`;
    assert.is(row.prepared_by, "beta_rw", "written as the role that inserted it");
    await t.direct(homeNode).unsafe("revoke insert on shardrouter.commit_decisions from beta_rw");
    await t.direct(homeNode).unsafe("grant insert (gid, decision) on shardrouter.commit_decisions to beta_rw");
  } finally {
    await recovering.kill("SIGINT");
  }
  const judge = await startRouterProcess(t.cluster, { config: config({ recoveryIntervalMs: 100, inDoubtGraceMs: 0 }) });
  try {
    const topology = clientFor(RouterService, judge.url, "connect-json", { token: alpha.key });
    await waitFor("recovery to report it in doubt", async () => ((await topology.getTopology({})).inDoubtTransactions >= 1 ? true : undefined), 20_000);
    assert.equal((await prepared()).map((p) => p.gid), [victim.gid], "still prepared: not committed on a forged decision");
    assert.equal(await balances([from, to]), before, "nothing moved");
  } finally {
    await judge.kill("SIGINT");
  }
  // The operator's way out: the home never committed it, so roll it back where it is prepared.
  for (const sh of t.cluster.shards) {
    const sql = t.direct(sh.nodes[0]);
    if ((await sql`select 1 from pg_prepared_xacts where gid = ${victim.gid}`).length) await sql.unsafe(`rollback prepared '${victim.gid}'`);
  }
});

test.run();
