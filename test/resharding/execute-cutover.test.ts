// Execute's writes across an online cutover (server/rpc/execute.ts under the write fence,
// server/transactions/atomic-statement.ts): a third shard is added to a two-shard ring with
// auto_cutover off, and while four clients write through Execute on a second router — multi-row
// INSERTs of fresh ids (each with its own request_id, retried by it) and pinned UPDATEs counting up
// `n` — CutOver is called and the writes go on under the new map. Afterwards every acknowledged
// INSERT's rows are there exactly once, on the shard the new map names; a retry of it is a replay;
// every counted increment is there exactly once; nothing is left prepared; and no call was refused
// other than retryably (aborted or unavailable), as for ExecuteOnShard and Transfer in cutover.test.ts.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as assert from "uvu/assert";
import { AdminService, type Reshard, ReshardPhase } from "../../gen/shardrouter/v1/admin_pb.js";
import type { ExecuteResponse } from "../../gen/shardrouter/v1/router_pb.js";
import { devConfig } from "../../server/dev-cluster/dev-config.js";
import type { ShardMap } from "../../server/placement/shard-map.js";
import { seedAccounts } from "../harness/accounts.js";
import { preparedTransactions } from "../harness/bank.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { type RouterProcess, startRouterProcess } from "../harness/router-process.js";
import { hook, test } from "../harness/uvu.js";

const accounts = 2000;
const clients = 4;
const tables = { sharded: { accounts: "id" }, reference: ["currencies"] };
let t: TestRouter;
// The clients write through a router of its own process: on the test's router, which runs the job,
// their load would starve the job's stream in the one event loop, and the job would never catch up.
let writers: RouterProcess;

test.before(hook(async () => {
  t = await startTestRouter({ shards: 3, spareShards: 1, tables });
  await seedAccounts(t, accounts, 0);
  for (const s of t.cluster.shards) {
    const sql = t.direct(s.nodes[0]);
    await sql`alter table accounts add column n bigint not null default 0`;
    await sql`create table currencies (code text primary key)`;
  }
  writers = await startRouterProcess(t.cluster, { config: { ...(devConfig(t.cluster, { port: 0, spareShards: 1, tables }) as Record<string, unknown>), transactions: { routerId: "writers" } } });
}));
test.after(hook(async () => {
  await writers?.kill("SIGTERM");
  await t?.stop();
}));

/** What cutover.test.ts allows a write around a cutover to answer: retried, never given up on. */
const retryable = new Set([Code.Aborted, Code.Unavailable]);

interface Insert { requestId: string; ids: string[]; response: ExecuteResponse }
interface Tally {
  inserts: Insert[];
  /** Increments Execute acknowledged, per account. */
  increments: Map<string, number>;
  retried: Map<string, number>;
  /** What the retried answers said, to show. */
  retryReasons: Set<string>;
  failures: string[];
  /** Ids of INSERTs that got no success: none of them may exist. */
  abandoned: string[];
}

const str = (value: string) => ({ kind: { case: "stringValue" as const, value } });
const place = (map: ShardMap, key: string) => (map.strategy.place(key) as { shard: string }).shard;

/** A call retried (same request) on aborted and unavailable only; anything else is a failure. */
async function withRetries(tally: Tally, what: string, call: () => Promise<ExecuteResponse>): Promise<ExecuteResponse | undefined> {
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      return await call();
    } catch (err) {
      const e = ConnectError.from(err);
      if (!retryable.has(e.code)) {
        tally.failures.push(`${what}: ${Code[e.code]}: ${e.rawMessage}`);
        return undefined;
      }
      tally.retried.set(Code[e.code], (tally.retried.get(Code[e.code]) ?? 0) + 1);
      tally.retryReasons.add(`${Code[e.code]}: ${e.rawMessage.replace(/"[^"]*"/g, '"…"')}`);
      await new Promise((r) => setTimeout(r, 20)); // a back-off, not synchronisation
    }
  }
  tally.failures.push(`${what}: gave up after 100 attempts`);
  return undefined;
}

async function client(index: number, stop: { now: boolean }, tally: Tally): Promise<void> {
  for (let i = 0; !stop.now; i++) {
    const ids = [0, 1, 2].map((k) => `x-c${index}-${i}-${k}`);
    const requestId = `insert-c${index}-${i}`;
    const inserted = await withRetries(tally, requestId, () => writers.client.execute({
      sql: "insert into accounts (id, balance, n) values ($1, 0, 0), ($2, 0, 0), ($3, 0, 0)", params: ids.map(str), requestId,
    }, { timeoutMs: 20_000 }));
    if (inserted) tally.inserts.push({ requestId, ids, response: inserted });
    else tally.abandoned.push(...ids);

    const key = `acct-${(i * 7919 + index * 131) % accounts}`;
    const updated = await withRetries(tally, `update ${key}`, () => writers.client.execute({
      sql: "update accounts set n = n + 1 where id = $1", params: [str(key)],
    }, { timeoutMs: 20_000 }));
    if (updated) {
      if (updated.result?.rowsAffected !== 1n) tally.failures.push(`update ${key} acknowledged with ${updated.result?.rowsAffected} rows on ${updated.shards} (map ${updated.shardMapVersion})`);
      tally.increments.set(key, (tally.increments.get(key) ?? 0) + 1);
    }
  }
}

test("Execute's multi-row INSERTs and pinned UPDATEs across a CutOver: each acknowledged write exactly once where the new map says, nothing prepared left, refusals only retryable", async () => {
  const admin = createClient(AdminService, createConnectTransport({ baseUrl: t.router.url, httpVersion: "1.1" }));
  const maps = new Map<number, ShardMap>([[t.router.planner.map.version, t.router.planner.map]]);
  const stop = { now: false };
  const tallies: Tally[] = [];
  const running = Array.from({ length: clients }, (_, i) => {
    const tally: Tally = { inserts: [], increments: new Map(), retried: new Map(), retryReasons: new Set(), failures: [], abandoned: [] };
    tallies.push(tally);
    return client(i, stop, tally);
  });
  const underVersion = (v: bigint) => tallies.map((x) => x.inserts.filter((w) => w.response.shardMapVersion === v).length);
  try {
    await waitFor("the clients to get going", () => (tallies.every((x) => x.inserts.length > 3) ? true : undefined), 30_000);
    await admin.startReshard({ jobId: "exec_add", addShards: [{ name: "shard-2", weight: 1 }], autoCutover: false });
    await waitFor("the job ready (copied, streamed, verified)", async () => {
      const r = (await admin.getReshard({ jobId: "exec_add" })).reshard!;
      if (r.phase === ReshardPhase.FAILED) throw new Error(`the job failed: ${r.error}`);
      return r.phase === ReshardPhase.READY ? true : undefined;
    }, 60_000);
    const before = tallies.map((x) => x.inserts.length);
    await waitFor("the clients writing while the job waits", () => (tallies.every((x, i) => x.inserts.length > before[i] + 3) ? true : undefined), 30_000);
    await admin.cutOver({ jobId: "exec_add" });
    // What the job reported while it got there: its phase and each source's stream lag, shown if it never does.
    let last: Reshard | undefined;
    const lags: string[] = [];
    const done = await waitFor("the job done", async () => {
      const r = last = (await admin.getReshard({ jobId: "exec_add" })).reshard!;
      lags.push(r.sources.map((x) => `${x.source} ${x.lagBytes} bytes behind for ${x.lagMs} ms`).join(", "));
      if (r.phase === ReshardPhase.FAILED) throw new Error(`the job failed: ${r.error}`);
      return r.phase === ReshardPhase.DONE ? r : undefined;
    }, 30_000).catch((err: Error) => {
      throw new Error(`${err.message}; it is ${ReshardPhase[last?.phase ?? 0]} (${last?.error || "no error"}); its streams, every 40th look:\n${lags.filter((_, i) => i % 40 === 0).join("\n")}`);
    });
    assert.is(done.toVersion, 2n);
    assert.equal([...done.cutover!.acknowledged].sort(), [t.router.routerId, "writers"].sort(), "both routers acknowledged the fence");
    await waitFor("the routers on version 2", async () => (t.router.planner.map.version === 2 && (await writers.client.route({ key: "acct-1" })).shardMapVersion === 2n ? true : undefined), 10_000);
    maps.set(2, t.router.planner.map);
    await waitFor("the clients writing under version 2", () => (underVersion(2n).every((n) => n > 5) ? true : undefined), 30_000);
  } finally {
    stop.now = true;
    await Promise.all(running);
  }
  const inserts = tallies.flatMap((x) => x.inserts);
  const retried = new Map<string, number>();
  for (const x of tallies) for (const [code, n] of x.retried) retried.set(code, (retried.get(code) ?? 0) + n);
  console.log(`  clients: ${inserts.length} inserts (${underVersion(1n).reduce((a, b) => a + b, 0)} under version 1, ${inserts.filter((w) => w.response.twoPhase).length} two-phase), ` +
    `${tallies.reduce((n, x) => n + [...x.increments.values()].reduce((a, b) => a + b, 0), 0)} increments, retried: ${JSON.stringify(Object.fromEntries(retried))}`);
  for (const reason of new Set(tallies.flatMap((x) => [...x.retryReasons]))) console.log(`    retried on ${reason}`);
  assert.equal(tallies.flatMap((x) => x.failures).slice(0, 5), [], "no call refused other than with aborted or unavailable (then retried to success)");
  assert.equal(tallies.flatMap((x) => x.abandoned), [], "no insert given up on");

  // Each answer names the shards of its rows under the map it reports.
  for (const w of inserts) {
    const map = maps.get(Number(w.response.shardMapVersion));
    assert.ok(map, `${w.requestId} answered under a known map version: ${w.response.shardMapVersion}`);
    assert.equal([...w.response.shards].sort(), [...new Set(w.ids.map((id) => place(map!, id)))].sort(), `${w.requestId}: the shards it reports`);
    assert.is(w.response.result?.rowsAffected, 3n, `${w.requestId} inserted its 3 rows`);
  }

  // Every row, read straight from each node.
  const to = maps.get(2)!;
  const owners = new Map<string, string[]>();
  const counts = new Map<string, bigint>();
  for (const s of t.cluster.shards) {
    for (const r of await t.direct(s.nodes[0])<{ id: string; n: string }[]>`select id, n::text from accounts`) {
      owners.set(r.id, [...(owners.get(r.id) ?? []), s.name]);
      counts.set(r.id, (counts.get(r.id) ?? 0n) + BigInt(r.n));
    }
  }
  assert.equal([...owners].filter(([, where]) => where.length > 1).slice(0, 5), [], "no row on two shards");
  for (const [id, [where]] of owners) {
    if (place(to, id) !== where) assert.unreachable(`${id} is on ${where}, the new map says ${place(to, id)}`);
  }
  const acknowledged = new Set(inserts.flatMap((w) => w.ids));
  for (const id of acknowledged) if (!owners.has(id)) assert.unreachable(`acknowledged insert's row ${id} is lost`);
  const strays = [...owners.keys()].filter((id) => id.startsWith("x-") && !acknowledged.has(id));
  assert.equal(strays.slice(0, 5), [], "no row of a call that was not acknowledged");
  assert.is(owners.size, accounts + acknowledged.size, "the seeded accounts and the acknowledged inserts, nothing else");
  assert.ok([...owners.values()].some(([w]) => w === "shard-2"), "rows moved to the new shard");

  // Every acknowledged increment exactly once, account by account.
  const expected = new Map<string, number>();
  for (const x of tallies) for (const [key, n] of x.increments) expected.set(key, (expected.get(key) ?? 0) + n);
  const wrong = [...counts].filter(([id, n]) => n !== BigInt(expected.get(id) ?? 0)).map(([id, n]) => `${id}: n=${n}, acknowledged ${expected.get(id) ?? 0}`);
  assert.equal(wrong.slice(0, 5), [], "each account's n is the number of increments acknowledged for it");
  assert.ok([...expected.keys()].some((k) => place(maps.get(1)!, k) !== place(to, k)), "some incremented accounts moved");

  // A retry of an acknowledged insert, after the cutover, is a replay wherever its record went.
  for (const w of inserts) {
    const again = await writers.client.execute({
      sql: "insert into accounts (id, balance, n) values ($1, 0, 0), ($2, 0, 0), ($3, 0, 0)", params: w.ids.map(str), requestId: w.requestId,
    });
    if (!again.replayed) assert.unreachable(`${w.requestId} retried after the cutover was not a replay`);
    assert.is(again.transactionId, w.response.transactionId, `${w.requestId}: the same transaction`);
  }

  // Nothing prepared left on any shard (recovery may settle a straggler; wait for it).
  const shards = t.cluster.shards.map((s) => ({ name: s.name, sql: t.direct(s.nodes[0]) }));
  await waitFor("no prepared transaction left", async () => ((await preparedTransactions(shards)).length === 0 ? true : undefined), 10_000)
    .catch(async (err) => assert.unreachable(`${(err as Error).message}: ${(await preparedTransactions(shards)).join(", ")}`));
});

test.run();
