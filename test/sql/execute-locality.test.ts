// Execute sends a statement only where it must go, counted by each shard's own pg_stat_statements
// (loaded on every node of this cluster): a statement pinned to a key runs on its owner and nowhere
// else, an IN-list over the keys of two shards on exactly those two, a read of a reference table on
// one shard. The statements carry a marker column name (pg_stat_statements keeps identifiers, and
// replaces constants), so the router's own queries (health checks, recovery) never count.
import * as assert from "uvu/assert";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
const str = (value: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value } });
const N = 20;

/** Executions on each shard's primary of statements whose text holds `marker`, by shard name. */
async function callsPerShard(marker: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const shard of t.cluster.shards) {
    const [{ calls }] = await t.direct(shard.nodes[0])<{ calls: number }[]>`
      select coalesce(sum(calls), 0)::int as calls from pg_stat_statements where query like ${`%${marker}%`} and query not like '%pg_stat_statements%'`;
    out[shard.name] = calls;
  }
  return out;
}

/**
 * Waits until the shards in `expected` have counted their executions (a backend records a statement
 * when its executor ends, which may be just after the client has its answer), then compares every
 * shard's count: the ones not in `expected` must have none.
 */
async function assertCalls(marker: string, expected: Record<string, number>): Promise<void> {
  const want = Object.fromEntries(t.cluster.shards.map((s) => [s.name, expected[s.name] ?? 0]));
  const total = Object.values(want).reduce((a, b) => a + b, 0);
  const seen = await waitFor(`${total} executions of "${marker}" to be counted`, async () => {
    const now = await callsPerShard(marker);
    return Object.entries(expected).every(([s, n]) => now[s] >= n) ? now : undefined;
  });
  assert.equal(seen, want, `executions of "${marker}" per shard`);
}

test.before(hook(async () => {
  t = await startTestRouter({
    shards: 4,
    tables: { sharded: { accounts: "id" }, reference: ["currencies"] },
    serverSettings: { shared_preload_libraries: "pg_stat_statements" },
  });
  await seedDemoAccounts(t.router.planner);
  for (const shard of t.cluster.shards) {
    const sql = t.direct(shard.nodes[0]);
    await sql`create extension pg_stat_statements`;
    await sql`create table currencies (code text primary key, name text not null)`;
    await sql`insert into currencies values ('EUR', 'euro'), ('USD', 'US dollar')`;
  }
}));
test.after(hook(async () => { await t?.stop(); }));

const pinned = [
  { what: "a read", key: "acct-7", marker: "pinned_read_probe", sql: "select id, balance as pinned_read_probe from accounts where id = $1" },
  { what: "a write", key: "acct-8", marker: "pinned_write_probe", sql: "update accounts set balance = balance where id = $1 returning id as pinned_write_probe" },
];
for (const { what, key, marker, sql } of pinned) {
  test(`${what} pinned to a key runs N times on its owner and never on another shard`, async () => {
    const owner = (await t.connect.route({ key })).shard;
    for (let i = 0; i < N; i++) {
      const r = await t.connect.execute({ sql, params: [str(key)] });
      assert.equal(r.shards, [owner]);
      assert.is(r.result?.rows.length, 1);
    }
    await assertCalls(marker, { [owner]: N });
  });
}

test("an IN-list over the keys of two shards runs on exactly those two", async () => {
  const first = "acct-1";
  const firstOwner = (await t.connect.route({ key: first })).shard;
  let second = "acct-2";
  for (let k = 3; (await t.connect.route({ key: second })).shard === firstOwner; k++) second = `acct-${k}`;
  const secondOwner = (await t.connect.route({ key: second })).shard;
  for (let i = 0; i < N; i++) {
    const r = await t.connect.execute({ sql: "select id, balance as in_list_probe from accounts where id in ($1, $2)", params: [str(first), str(second)] });
    assert.equal(new Set(r.shards), new Set([firstOwner, secondOwner]));
    assert.is(r.result?.rows.length, 2);
  }
  await assertCalls("in_list_probe", { [firstOwner]: N, [secondOwner]: N });
});

test("a read of a reference table runs on one shard per call", async () => {
  for (let i = 0; i < N; i++) {
    const r = await t.connect.execute({ sql: "select code, name as reference_probe from currencies order by code" });
    assert.is(r.shards.length, 1);
    assert.is(r.result?.rows.length, 2);
  }
  const seen = await waitFor(`${N} executions of the reference read to be counted`, async () => {
    const now = await callsPerShard("reference_probe");
    return Object.values(now).reduce((a, b) => a + b, 0) >= N ? now : undefined;
  });
  assert.is(Object.values(seen).reduce((a, b) => a + b, 0), N, `one shard per call: ${JSON.stringify(seen)}`);
});

test.run();
