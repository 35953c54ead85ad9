// Result caps: limits.maxBytes trips on a few large rows (maxRows never would), for one shard, for
// every shard together, and inside a transaction, where the cap must roll everything back: no row
// written, no prepared transaction left, no request recorded (a retry gets the same answer).
import { Code } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import postgres from "postgres";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import { failure } from "../harness/failure.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
const maxBytes = 20_000;
const str = (value: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value } });
/** 10 rows of 5,000 bytes: far under maxRows, over maxBytes. */
const wide = "select g, repeat('x', 5000) as pad from generate_series(1, 10) g";

test.before(hook(async () => {
  t = await startTestRouter({ shards: 2, limits: { maxRows: 1000, maxBytes } });
  await t.grpc.executeOnAll({ sql: "create table capped (id text primary key, note text)" });
}));
test.after(hook(async () => { await t?.stop(); }));

const primary = (shard: string) => t.direct(t.cluster.shards.find((s) => s.name === shard)!.nodes[0]);

async function keyOn(shard: string, not?: string): Promise<string> {
  for (let i = 0; ; i++) {
    const k = `cap-${i}`;
    if ((await t.router.planner.route(k)).shard.name === shard && k !== not) return k;
  }
}

async function noneActive(sql: postgres.Sql): Promise<void> {
  await waitFor("the capped statement to stop on Postgres", async () => {
    const rows = await sql`select 1 from pg_stat_activity where application_name = 'shardrouter' and state = 'active' and query like '%repeat(''x'', 5000)%'`;
    return rows.length === 0 ? true : undefined;
  });
}

test("maxBytes trips on a few large rows on one shard, and on all shards together", async () => {
  const one = await failure(t.grpc.executeOnShard({ key: "k", sql: wide }));
  assert.is(one.code, Code.ResourceExhausted);
  assert.match(one.rawMessage, `${maxBytes} bytes`);
  // Each shard alone stays under the cap (2 × 5,000 bytes); together they pass it: the budget is shared.
  const all = await failure(t.grpc.executeOnAll({ sql: "select g, repeat('x', 5000) as pad from generate_series(1, 3) g" }));
  assert.is(all.code, Code.ResourceExhausted);
  assert.match(all.rawMessage, `${maxBytes} bytes`);
  for (const shard of t.cluster.shards) await noneActive(primary(shard.name));
  const fine = await t.grpc.executeOnShard({ key: "k", sql: "select g, repeat('x', 100) from generate_series(1, 10) g" });
  assert.is(fine.result?.rows.length, 10, "an answer under the cap still comes whole");
});

test("a capped ExecuteTransaction on one shard rolls back and records nothing", async () => {
  const [s0] = t.cluster.shards.map((s) => s.name);
  const key = await keyOn(s0);
  const requestId = `capped-one-${Date.now()}`;
  const req = {
    requestId,
    statements: [
      { key, sql: "insert into capped (id, note) values ($1, 'written')", params: [str(key)] },
      { key, sql: wide },
    ],
  };
  for (let i = 0; i < 2; i++) { // the retry meets the same cap: the first attempt left no record
    const err = await failure(t.grpc.executeTransaction(req));
    assert.is(err.code, Code.ResourceExhausted, err.message);
  }
  const sql = primary(s0);
  assert.is((await sql`select id from capped where id = ${key}`).length, 0, "the insert was rolled back");
  assert.is((await sql`select request_id from shardrouter.requests where request_id = ${requestId}`).length, 0, "no request record");
});

test("a capped two-phase ExecuteTransaction leaves nothing on either shard and nothing prepared", async () => {
  const [s0, s1] = t.cluster.shards.map((s) => s.name);
  const a = await keyOn(s0);
  const b = await keyOn(s1);
  const err = await failure(t.grpc.executeTransaction({
    requestId: `capped-two-${Date.now()}`,
    statements: [
      { key: a, sql: "insert into capped (id, note) values ($1, 'written')", params: [str(a)] },
      { key: b, sql: "insert into capped (id, note) values ($1, 'written')", params: [str(b)] },
      { key: b, sql: wide },
    ],
  }));
  assert.is(err.code, Code.ResourceExhausted, err.message);
  for (const [shard, key] of [[s0, a], [s1, b]]) {
    const sql = primary(shard);
    assert.is((await sql`select id from capped where id = ${key}`).length, 0, `nothing written on ${shard}`);
    assert.is((await sql`select gid from pg_prepared_xacts`).length, 0, `nothing prepared on ${shard}`);
  }
});

test.run();
