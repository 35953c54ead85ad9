// The two identities `npm start` makes (server/dev-cluster/dev-auth.ts), with the very config it
// builds: the reader may call Execute, and reads through it work on one shard and on every shard,
// but Postgres refuses its writes (42501), whether Execute sends them to one shard, to several
// (two-phase) or to every shard; nothing is written and nothing is left prepared. The dev identity's
// same writes go through, so the refusal is the reader's role, not Execute.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as assert from "uvu/assert";
import { Code, createClient, type ShardRouterClient, ShardRouterError } from "../../sdk/src/node.ts";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { type DevAuth, ensureDevAuth, READER_RPCS } from "../../server/dev-cluster/dev-auth.js";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

const dataDir = mkdtempSync(join(tmpdir(), "shardrouter-dev-auth-"));
let t: TestRouter;
let auth: DevAuth;
let reader: ShardRouterClient;
let dev: ShardRouterClient;

test.before(hook(async () => {
  t = await startTestRouter({ shards: 3, auth: async (cluster) => (auth = await ensureDevAuth(cluster, dataDir)).config });
  await seedDemoAccounts(t.router.planner);
  reader = createClient({ baseUrl: t.router.url, token: auth.readerToken });
  dev = createClient({ baseUrl: t.router.url, token: auth.devToken });
}));
test.after(hook(async () => {
  reader?.close();
  dev?.close();
  await t?.stop();
  rmSync(dataDir, { recursive: true, force: true });
}));

/** Two demo accounts on different shards. */
async function onTwoShards(): Promise<[string, string]> {
  const first = await dev.route("acct-0");
  for (let i = 1; ; i++) {
    if ((await dev.route(`acct-${i}`)).shard !== first.shard) return ["acct-0", `acct-${i}`];
  }
}

async function refused(call: Promise<unknown>, what: string): Promise<void> {
  const err = await call.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof ShardRouterError, `${what}: expected a refusal, got ${String(err)}`);
  assert.is(Code[err.code], Code[Code.PermissionDenied], `${what}: ${err.message}`);
  assert.is(err.sqlstate, "42501", `${what}: Postgres refused it (${err.message})`);
}

async function balances(): Promise<bigint> {
  let total = 0n;
  for (const s of t.cluster.shards) total += BigInt((await t.direct(s.nodes[0])<{ sum: string }[]>`select sum(balance)::text as sum from accounts`)[0].sum);
  return total;
}

test("the reader's rights name Execute, and its reads through Execute work on one shard and on every shard", async () => {
  assert.ok(READER_RPCS.includes("Execute"));
  const one = await reader.execute("select balance from accounts where id = $1", ["acct-1"]);
  assert.equal([one.rows, one.shards], [[{ balance: 1000n }], [(await reader.route("acct-1")).shard]]);
  const all = await reader.sql`select count(*) as n from accounts`;
  assert.equal([all.rows, all.shards.length], [[{ n: 1000n }], 3]);
});

test("a reader's write through Execute is refused by Postgres (42501) on one shard, on two (two-phase) and on every shard; nothing changes", async () => {
  const before = await balances();
  const [a, b] = await onTwoShards();
  await refused(reader.execute("update accounts set balance = 0 where id = $1", [a]), "one shard");
  await refused(reader.execute("update accounts set balance = 0 where id in ($1, $2)", [a, b], { requestId: "reader-two" }), "two shards");
  await refused(reader.execute("insert into accounts (id, balance) values ($1, 1), ($2, 1)", ["reader-x", "reader-y"]), "a multi-row insert");
  await refused(reader.execute("delete from accounts where balance >= 0", [], { allowScatterWrite: true }), "every shard");
  assert.is(await balances(), before, "no balance moved");
  for (const s of t.cluster.shards) {
    const sql = t.direct(s.nodes[0]);
    assert.is((await sql`select id from accounts where id like 'reader-%'`).length, 0, s.name);
    assert.is((await sql`select count(*)::int as n from pg_prepared_xacts`)[0].n, 0, `${s.name}: nothing left prepared`);
  }
});

test("the dev identity's same write through Execute commits on both shards", async () => {
  const [a, b] = await onTwoShards();
  const r = await dev.execute("update accounts set balance = balance + 1 where id in ($1, $2)", [a, b]);
  assert.equal([r.rowsAffected, r.twoPhase], [2, true]);
  const read = await reader.execute<{ id: string; balance: bigint }>("select id, balance from accounts where id in ($1, $2) order by id", [a, b]);
  assert.equal(read.rows.map((x) => x.balance), [1001n, 1001n]);
});

test.run();
