// One source's copy and stream (server/resharding/source-move.ts) on real servers, with writes going
// on throughout: after each fault (a stream cut mid-transaction, a restarted source, a copy that broke
// half way, a stopped mover) the mover runs again and the target must end up holding exactly the
// moving rows of the source, column for column, TOASTed values included.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as assert from "uvu/assert";
import postgres from "postgres";
import { type LocalCluster, type LocalNode, startLocalCluster } from "../../server/dev-cluster/local-cluster.js";
import { parseLsn } from "../../server/resharding/lsn.js";
import { SourceMove, type SourceMoveSpec, cleanUpSource, slotName } from "../../server/resharding/source-move.js";
import type { NodeConfig } from "../../server/shards/node-pool.js";
import { hook, test } from "../harness/uvu.js";
import { waitFor } from "../harness/router-cluster.js";

let dataDir: string;
let cluster: LocalCluster;
let sourceNode: LocalNode;
let targetNode: LocalNode;
let source: postgres.Sql;
let target: postgres.Sql;

const asConfig = (n: LocalNode): NodeConfig => ({ name: n.name, host: n.host, port: n.port, database: n.database, user: n.user, password: n.password, role: "primary" });
/** Keys whose number is a multiple of 3 move (any rule the router's placement could give). */
const moves = (key: string) => Number(key.replace(/\D/g, "")) % 3 === 0;

function spec(job: string, destination = (key: string) => (moves(key) ? "target" : undefined)): SourceMoveSpec {
  return {
    job,
    source: { name: "source", node: asConfig(sourceNode) },
    targets: [{ name: "target", node: asConfig(targetNode) }],
    tables: [{ name: "accounts", keyColumn: "id" }],
    destination,
    fromSource: () => true,
    connectTimeoutMs: 3000,
  };
}

const table = `create table accounts (id text primary key, balance bigint not null, note text, at timestamptz default clock_timestamp())`;
// ~20 kB that does not compress: stored out of line (TOAST), so an UPDATE of balance sends it as "unchanged".
const bigNote = `(select string_agg(md5(random()::text), '') from generate_series(1, 600))`;

test.before(hook(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "shardrouter-move-"));
  cluster = await startLocalCluster({ dataDir, shards: 2, replicas: 0 });
  [sourceNode, targetNode] = cluster.shards.map((s) => s.nodes[0]);
  source = postgres({ ...asConfig(sourceNode), max: 4, fetch_types: false, onnotice: () => {} });
  target = postgres({ ...asConfig(targetNode), max: 2, fetch_types: false, onnotice: () => {} });
}));

test.after(hook(async () => {
  await Promise.all([source?.end({ timeout: 1 }), target?.end({ timeout: 1 })]);
  await cluster?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}));

async function freshTables(rows: number): Promise<void> {
  for (const sql of [source, target]) await sql.unsafe(`drop table if exists accounts; ${table}`);
  await source.unsafe(`insert into accounts (id, balance, note) select 'acct-' || g, 1000, case when g % 50 = 0 then ${bigNote} else 'n' || g end from generate_series(1, ${rows}) g`);
}

/** Writes of every kind, to moving and staying keys; `n` rounds. */
async function writes(n: number, from: number): Promise<void> {
  for (let i = from; i < from + n; i++) {
    await source.begin(async (tx) => {
      await tx.unsafe("update accounts set balance = balance - 1 where id = $1", [`acct-${(i * 7) % 3000 + 1}`]);
      await tx.unsafe("update accounts set balance = balance + 1 where id = $1", [`acct-${(i * 11) % 3000 + 1}`]);
      await tx.unsafe(`insert into accounts (id, balance, note) values ($1, $2, case when $3 then ${bigNote} else 'x' end)`, [`new-${i}`, i, i % 4 === 0]);
      if (i % 5 === 0) await tx.unsafe("delete from accounts where id = $1", [`new-${i - 3}`]);
      // Only the balance changes: a TOASTed note (every 50th account) arrives as "unchanged".
      if (i % 3 === 0) await tx.unsafe("update accounts set balance = balance + 5 where id = $1", [`acct-${(i % 60) * 50 + 50}`]);
      // A key change: the row leaves or enters the moving keys.
      if (i % 7 === 0) await tx.unsafe("update accounts set id = $2 where id = $1", [`new-${i}`, `moved-${i}`]);
    });
  }
}

async function rowsOf(sql: postgres.Sql, onlyMoving: boolean): Promise<string[]> {
  const rows = await sql.unsafe<{ id: string; r: string }[]>("select id, (balance, md5(coalesce(note, '')), at)::text as r from accounts order by id");
  return rows.filter((r) => !onlyMoving || moves(r.id)).map((r) => `${r.id} ${r.r}`);
}

/** Waits until the mover has applied everything the source has committed so far. */
async function caughtUp(move: SourceMove): Promise<void> {
  // A committed write to a moving key after the others: once it is applied, all before it are.
  await source.unsafe("insert into accounts (id, balance) values ('acct-0', 0) on conflict (id) do update set balance = accounts.balance + 1");
  const [{ lsn }] = await source.unsafe<{ lsn: string }[]>("select pg_current_wal_insert_lsn()::text as lsn");
  await waitFor("the target to apply the source's last commit", () => (move.status.applied >= parseLsn(lsn) ? true : undefined), 30_000);
}

async function assertSame(what: string): Promise<void> {
  const want = await rowsOf(source, true);
  const got = await rowsOf(target, false);
  assert.is(got.length, want.length, `${what}: row count`);
  assert.equal(got, want, what);
}

test("copy then stream: the target ends with exactly the moving rows, under writes, TOASTed values included", async () => {
  await freshTables(3000);
  const move = new SourceMove(spec("j1"));
  const running = move.run();
  await Promise.all([writes(120, 1), waitFor("streaming", () => (move.status.phase === "streaming" ? true : undefined), 30_000)]);
  await writes(120, 200);
  await caughtUp(move);
  await move.stop();
  await running;
  await assertSame("after copy and stream");
  assert.ok((move.status.copied.target?.accounts ?? 0) > 900, "the copy carried the moving third");
  await cleanUpSource(asConfig(sourceNode), "j1", "source");
  const [{ n }] = await source.unsafe("select count(*)::int as n from pg_replication_slots");
  assert.is(n, 0, "no slot left behind");
});

test("a stream cut mid-way, and a restarted source, resume from what the target recorded: nothing lost or doubled", async () => {
  await freshTables(3000);
  const job = "j2";
  let move = new SourceMove(spec(job));
  let running = move.run().catch((e: Error) => e);
  await waitFor("streaming", () => (move.status.phase === "streaming" ? true : undefined), 30_000);
  const load = writes(300, 1);
  // Cut the stream: its walsender dies, the run fails, the slot stays.
  await waitFor("some changes applied", () => (move.status.applied > 0n ? true : undefined));
  await source.unsafe("select pg_terminate_backend(active_pid) from pg_replication_slots where slot_name = $1", [slotName(job, "source")]);
  assert.instance(await running, Error);
  move = new SourceMove(spec(job));
  running = move.run().catch((e: Error) => e);
  await load;
  // Restart the source while the stream runs.
  await writes(50, 400);
  await cluster.stopNode(sourceNode.name, "immediate");
  await cluster.startNode(sourceNode.name);
  assert.instance(await running, Error);
  move = new SourceMove(spec(job));
  running = move.run().catch((e: Error) => e);
  await writes(50, 500);
  await caughtUp(move);
  await move.stop();
  assert.is(await running, undefined);
  await assertSame("after a cut stream and a restarted source");
  await cleanUpSource(asConfig(sourceNode), job, "source");
});

test("a copy that broke half way is cleared and done again", async () => {
  await freshTables(3000);
  const job = "j3";
  let calls = 0;
  const breaking = new SourceMove(spec(job, (key) => {
    if (++calls === 2000) throw new Error("the router died during the copy");
    return moves(key) ? "target" : undefined;
  }));
  const err = await breaking.run().then(() => undefined, (e: Error) => e);
  assert.match(String(err?.message), "died during the copy");
  const [{ n }] = await target.unsafe("select count(*)::int as n from accounts");
  assert.is(n, 0, "the half copy rolled back");
  const move = new SourceMove(spec(job));
  const running = move.run();
  await writes(40, 1);
  await caughtUp(move);
  await move.stop();
  await running;
  await assertSame("after a broken copy");
  await cleanUpSource(asConfig(sourceNode), job, "source");
});

test("a prepared (two-phase) transaction on the source holds the copy back with a clear error until it is settled", async () => {
  await freshTables(100);
  const conn = await source.reserve();
  await conn.unsafe("begin");
  await conn.unsafe("update accounts set balance = 1 where id = 'acct-3'");
  await conn.unsafe("prepare transaction 'move_test_gid'");
  conn.release();
  const err = await new SourceMove({ ...spec("j5"), settlePreparedWithinMs: 300 }).run().then(() => undefined, (e: Error) => e);
  assert.match(String(err?.message), "1 prepared transaction(s) on source must be settled");
  await source.unsafe("commit prepared 'move_test_gid'");
  const move = new SourceMove(spec("j5"));
  const running = move.run();
  await caughtUp(move);
  await move.stop();
  await running;
  await assertSame("after the prepared transaction was settled");
  await cleanUpSource(asConfig(sourceNode), "j5", "source");
});

test("a table whose primary key lacks the shard key is refused, and named", async () => {
  for (const sql of [source, target]) await sql.unsafe("drop table if exists accounts; create table accounts (n serial primary key, id text not null)");
  const err = await new SourceMove(spec("j4")).run().then(() => undefined, (e: Error) => e);
  assert.match(String(err?.message), "primary key of accounts");
  assert.match(String(err?.message), "does not contain its shard key id");
});

test.run();
