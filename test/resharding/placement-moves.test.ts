// Reshard jobs for the other strategies, started with placement_json: a range split (half of one
// shard's range goes to a new shard) and a list value moved to another shard (geographic sharding,
// a table keyed by region). Each ends with exactly the rows the new map gives each shard, and
// schema changes are refused while a job runs.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as assert from "uvu/assert";
import { AdminService, ReshardPhase } from "../../gen/shardrouter/v1/admin_pb.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter | undefined;
test.after.each(hook(async () => { await t?.stop(); t = undefined; }));

const adminOf = (router: TestRouter) => createClient(AdminService, createConnectTransport({ baseUrl: router.router.url, httpVersion: "1.1" }));

async function runToDone(router: TestRouter, jobId: string, placement: unknown, shards: string[]) {
  const admin = adminOf(router);
  const started = (await admin.startReshard({ jobId, placementJson: JSON.stringify(placement), shards: shards.map((name) => ({ name, weight: 1 })), autoCutover: true })).reshard!;
  return {
    started,
    done: await waitFor(`job ${jobId} to finish`, async () => {
      const r = (await admin.getReshard({ jobId })).reshard!;
      if (r.phase === ReshardPhase.FAILED) throw new Error(`the job failed: ${r.error}`);
      return r.phase === ReshardPhase.DONE ? r : undefined;
    }, 90_000),
  };
}

async function rowsByShard(router: TestRouter, sql: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const s of router.cluster.shards) out[s.name] = (await router.direct(s.nodes[0]).unsafe<{ k: string }[]>(sql)).map((r) => r.k);
  return out;
}

const key = (i: number) => `k-${String(i).padStart(4, "0")}`;

test("range split: the upper half of shard-0's range moves to a new shard; DDL is refused meanwhile", async () => {
  t = await startTestRouter({
    shards: 3, spareShards: 1,
    placement: { strategy: "range", keyType: "string", ranges: [{ shard: "shard-0", lessThan: "k-1000" }, { shard: "shard-1" }] },
  });
  for (const s of t.cluster.shards) await t.direct(s.nodes[0])`create table accounts (id text primary key, balance bigint not null)`;
  for (let i = 0; i < 2000; i++) {
    await t.connect.executeOnShard({ key: key(i), sql: "insert into accounts values ($1, 1)", params: [{ kind: { case: "stringValue", value: key(i) } }] });
  }
  const admin = adminOf(t);
  const split = { strategy: "range", keyType: "string", ranges: [{ shard: "shard-0", lessThan: "k-0500" }, { shard: "shard-2", lessThan: "k-1000" }, { shard: "shard-1" }] };
  // Not cut over by itself: while it waits, a schema change is refused.
  await admin.startReshard({ jobId: "split", placementJson: JSON.stringify(split), shards: ["shard-0", "shard-1", "shard-2"].map((name) => ({ name, weight: 1 })) });
  const refused = await t.connect.executeOnAll({ sql: "alter table accounts add column note text" }).then(() => undefined, (e: ConnectError) => e);
  assert.is(refused?.code, Code.FailedPrecondition);
  assert.match(refused!.rawMessage, /AlterTable is refused while reshard job split runs/);
  const truncate = await t.connect.executeOnShard({ key: "k-0001", sql: "truncate accounts" }).then(() => undefined, (e: ConnectError) => e);
  assert.is(truncate?.code, Code.FailedPrecondition);
  await waitFor("ready", async () => ((await admin.getReshard({ jobId: "split" })).reshard!.phase === ReshardPhase.READY ? true : undefined), 60_000);
  const planned = (await admin.getReshard({ jobId: "split" })).reshard!;
  const topo = await t.connect.getTopology({});
  assert.equal(topo.shards.map((s) => [s.name, s.state]), [["shard-0", "active"], ["shard-1", "active"], ["shard-2", "receiving"]]);
  assert.equal(planned.moves.map((m) => [m.source, m.target, m.estimatedRows]), [["shard-0", "shard-2", 500n]]);
  await admin.cutOver({ jobId: "split" });
  await waitFor("done", async () => ((await admin.getReshard({ jobId: "split" })).reshard!.phase === ReshardPhase.DONE ? true : undefined), 60_000);
  const rows = await rowsByShard(t, "select id as k from accounts order by id");
  assert.equal(rows["shard-0"], Array.from({ length: 500 }, (_, i) => key(i)));
  assert.equal(rows["shard-2"], Array.from({ length: 500 }, (_, i) => key(500 + i)));
  assert.equal(rows["shard-1"], Array.from({ length: 1000 }, (_, i) => key(1000 + i)));
  assert.is((await t.connect.route({ key: "k-0700" })).shard, "shard-2");
  // Once the job is over (the router hears within a poll), schema changes go through again.
  await waitFor("schema changes allowed again", () => t!.connect.executeOnAll({ sql: "create table if not exists after_the_job (id int)" })
    .then(() => true, (e: ConnectError) => (e.code === Code.FailedPrecondition ? undefined : Promise.reject(e))), 10_000);
});

test("list move: region 'ap' moves to its own shard, with every order of it, keyed by (region, id)", async () => {
  t = await startTestRouter({
    shards: 3, spareShards: 1,
    placement: { strategy: "list", values: { eu: "shard-0", us: "shard-1", ap: "shard-1" } },
    resharding: { tables: [{ name: "orders", keyColumn: "region" }] },
  });
  for (const s of t.cluster.shards) await t.direct(s.nodes[0])`create table orders (region text, id int, amount int not null, primary key (region, id))`;
  for (const region of ["eu", "us", "ap"]) {
    for (let i = 0; i < 100; i++) {
      await t.connect.executeOnShard({
        key: region, sql: "insert into orders values ($1, $2, 1)",
        params: [{ kind: { case: "stringValue", value: region } }, { kind: { case: "int64Value", value: BigInt(i) } }],
      });
    }
  }
  const { started, done } = await runToDone(t, "move_ap", { strategy: "list", values: { eu: "shard-0", us: "shard-1", ap: "shard-2" } }, ["shard-0", "shard-1", "shard-2"]);
  assert.equal(started.moves.map((m) => [m.source, m.target, m.estimatedRows]), [["shard-1", "shard-2", 100n]]);
  assert.is(done.verify?.rowsCompared, 100n);
  const rows = await rowsByShard(t, "select distinct region as k from orders order by 1");
  assert.equal(rows, { "shard-0": ["eu"], "shard-1": ["us"], "shard-2": ["ap"] });
  const [{ n }] = await t.direct(t.cluster.shards[2].nodes[0])<{ n: number }[]>`select count(*)::int as n from orders`;
  assert.is(n, 100);
});

test("directory moves: listed keys move to another shard under writes, the directory changes at the cutover; reversed, they go back", async () => {
  t = await startTestRouter({ shards: 3, placement: { strategy: "directory" } });
  for (const s of t.cluster.shards) await t.direct(s.nodes[0])`create table accounts (id text primary key, balance bigint not null)`;
  const param = (v: string) => [{ kind: { case: "stringValue" as const, value: v } }];
  for (let i = 0; i < 300; i++) await t.connect.executeOnShard({ key: key(i), sql: "insert into accounts values ($1, 0)", params: param(key(i)) });
  const before = new Map<string, string>();
  for (let i = 0; i < 300; i++) before.set(key(i), (await t.connect.route({ key: key(i) })).shard);
  const moving = [...before].filter(([, shard]) => shard !== "shard-2").slice(0, 40).map(([k]) => k);
  // Increments to the moving keys throughout; each acknowledged one must be there at the end.
  const acked = new Map<string, number>();
  const stop = { now: false };
  const writer = (async () => {
    for (let i = 0; !stop.now; i++) {
      const k = moving[i % moving.length];
      await t!.connect.executeOnShard({ key: k, sql: "update accounts set balance = balance + 1 where id = $1", params: param(k) });
      acked.set(k, (acked.get(k) ?? 0) + 1);
    }
  })().then(() => undefined, (err: unknown) => err);
  const admin = adminOf(t);
  const phase = async (id: string) => {
    const r = (await admin.getReshard({ jobId: id })).reshard!;
    if (r.phase === ReshardPhase.FAILED) throw new Error(`the job failed: ${r.error}`);
    return r.phase === ReshardPhase.DONE ? r : undefined;
  };
  try {
    const started = (await admin.startReshard({ jobId: "dir_move", directoryMoves: moving.map((k) => ({ key: k, shard: "shard-2" })), autoCutover: true })).reshard!;
    assert.ok(started.moves.length > 0 && started.moves.every((m) => m.target === "shard-2"));
    assert.is(started.moves.reduce((n, m) => n + m.estimatedRows, 0n), BigInt(moving.length));
    await waitFor("the directory move to finish", () => phase("dir_move"), 90_000);
  } finally {
    stop.now = true;
  }
  assert.is(await writer, undefined, "no write failed during the move");
  const owners = async () => {
    const out = new Map<string, { shard: string; balance: number }[]>();
    for (const s of t!.cluster.shards) {
      for (const r of await t!.direct(s.nodes[0])<{ id: string; balance: string }[]>`select id, balance::text from accounts`) {
        out.set(r.id, [...(out.get(r.id) ?? []), { shard: s.name, balance: Number(r.balance) }]);
      }
    }
    return out;
  };
  const after = await owners();
  assert.is(after.size, 300, "no account lost or added");
  for (const [k, where] of after) {
    assert.is(where.length, 1, `${k} is on one shard`);
    const expected = moving.includes(k) ? "shard-2" : before.get(k);
    assert.is(where[0].shard, expected, `${k} is where it belongs`);
    assert.is((await t.connect.route({ key: k })).shard, expected, `Route agrees for ${k}`);
    assert.is(where[0].balance, acked.get(k) ?? 0, `every acknowledged increment of ${k} is there`);
  }
  const entries = await t.direct(t.cluster.catalog)<{ key: string }[]>`select key from shardrouter.directory where shard = 'shard-2' and key = any(${moving})`;
  assert.is(entries.length, moving.length, "the directory names the new owner");

  await admin.reverseReshard({ jobId: "dir_move" });
  await waitFor("the reverse to finish", () => phase("dir_move_reverse"), 90_000);
  for (const [k, where] of await owners()) {
    assert.equal(where.map((w) => w.shard), [before.get(k)], `${k} is back where it was`);
    assert.is((await t.connect.route({ key: k })).shard, before.get(k));
  }
});

test.run();
