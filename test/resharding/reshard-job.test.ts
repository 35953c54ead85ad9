// A reshard job's data movement across shards (server/resharding/reshard-job.ts): two shards on a hash
// ring, a third added. Each source copies and streams the keys the new ring gives the third; writes
// go on throughout, a source restarts mid-stream and the job runs it again by itself. Then a cancel
// leaves nothing behind: no slot, no publication, no copied row, no progress row.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as assert from "uvu/assert";
import postgres from "postgres";
import { type LocalCluster, type LocalNode, startLocalCluster } from "../../server/dev-cluster/local-cluster.js";
import { PlacementConfigSchema } from "../../server/placement/placement-config.js";
import { buildShardMap } from "../../server/placement/shard-map.js";
import { parseLsn } from "../../server/resharding/lsn.js";
import { ReshardJob } from "../../server/resharding/reshard-job.js";
import { cancelSourceMove } from "../../server/resharding/source-move.js";
import { verifyMove } from "../../server/resharding/verify.js";
import type { NodeConfig } from "../../server/shards/node-pool.js";
import { hook, test } from "../harness/uvu.js";
import { waitFor } from "../harness/router-cluster.js";

let dataDir: string;
let cluster: LocalCluster;
const nodes = new Map<string, LocalNode>();
const sql = new Map<string, postgres.Sql>();
const ring = PlacementConfigSchema.parse({ strategy: "hash_ring" });
const from = buildShardMap(ring, [{ name: "s1", weight: 1 }, { name: "s2", weight: 1 }]);
const to = buildShardMap(ring, [{ name: "s1", weight: 1 }, { name: "s2", weight: 1 }, { name: "s3", weight: 1 }], { version: 2 });
const ownerIn = (map: typeof from, key: string) => (map.strategy.place(key) as { shard: string }).shard;
const asConfig = (n: LocalNode): NodeConfig => ({ name: n.name, host: n.host, port: n.port, database: n.database, user: n.user, password: n.password, role: "primary" });
const db = (shard: string) => sql.get(shard)!;

test.before(hook(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "shardrouter-reshard-"));
  cluster = await startLocalCluster({ dataDir, shards: 3, replicas: 0 });
  cluster.shards.forEach((s, i) => nodes.set(`s${i + 1}`, s.nodes[0]));
  for (const [name, node] of nodes) {
    const c = postgres({ ...asConfig(node), max: 3, fetch_types: false, onnotice: () => {} });
    sql.set(name, c);
    await c.unsafe("drop table if exists accounts; create table accounts (id text primary key, balance bigint not null)");
  }
  const keys = Array.from({ length: 6000 }, (_, i) => `acct-${i}`);
  for (const shard of ["s1", "s2"]) {
    const mine = keys.filter((k) => ownerIn(from, k) === shard);
    await db(shard).unsafe("insert into accounts (id, balance) select jsonb_array_elements_text($1::text::jsonb), 100", [JSON.stringify(mine)]);
  }
}));

test.after(hook(async () => {
  await Promise.all([...sql.values()].map((c) => c.end({ timeout: 1 })));
  await cluster?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}));

/** Transfers inside each old shard and new accounts, placed by the map in force. */
async function writes(n: number, from0: number): Promise<void> {
  for (let i = from0; i < from0 + n; i++) {
    const key = `acct-${(i * 37) % 6000}`;
    const shard = ownerIn(from, key);
    await db(shard).unsafe("update accounts set balance = balance + 1 where id = $1", [key]).catch(() => undefined); // a restarting shard may refuse
    const fresh = `new-${i}`;
    await db(ownerIn(from, fresh)).unsafe("insert into accounts values ($1, 1)", [fresh]).catch(() => undefined);
  }
}

async function caughtUp(job: ReshardJob): Promise<void> {
  for (const shard of ["s1", "s2"]) {
    await db(shard).unsafe("create table if not exists marks (id text primary key)"); // not moving: a commit to wait past
    await db(shard).unsafe("update accounts set balance = balance where id = (select id from accounts order by id limit 1)");
    const [{ lsn }] = await db(shard).unsafe<{ lsn: string }[]>("select pg_current_wal_insert_lsn()::text as lsn");
    await waitFor(`${shard}'s stream to apply its last commit`, () => (job.status.sources[shard]?.phase === "streaming" && job.status.sources[shard].applied >= parseLsn(lsn) ? true : undefined), 30_000);
  }
}

test("adding a shard: s3 receives exactly the keys the new ring gives it, from both sources, through a source restart; verify finds no difference, then names spoiled rows", async () => {
  const job = new ReshardJob({ job: "add_s3", from, to, tables: [{ name: "accounts", keyColumn: "id" }], primary: (s) => asConfig(nodes.get(s)!), retryAfterMs: 200 });
  job.start();
  await writes(200, 0);
  await waitFor("both sources streaming", () => (["s1", "s2"].every((s) => job.status.sources[s].phase === "streaming") ? true : undefined), 30_000);
  await writes(200, 1000);
  await cluster.stopNode(nodes.get("s1")!.name, "immediate");
  await cluster.startNode(nodes.get("s1")!.name);
  await writes(200, 2000);
  await caughtUp(job);
  assert.ok(job.status.sources.s1.attempts >= 2, "s1's move ran again after its restart");

  const rows = async (shard: string) => (await db(shard).unsafe<{ id: string; balance: string }[]>("select id, balance::text from accounts order by id")).map((r) => `${r.id}=${r.balance}`);
  const expected = [...await rows("s1"), ...await rows("s2")].filter((r) => ownerIn(to, r.split("=")[0]) === "s3").sort();
  const got = (await rows("s3")).sort();
  assert.is(got.length, expected.length);
  assert.equal(got, expected);
  const total = (await rows("s1")).length + (await rows("s2")).length;
  const share = got.length / total;
  assert.ok(share > 0.28 && share < 0.38, `s3 holds a third of the keys (${share.toFixed(3)})`);

  // Verification: the stream caught up, so nothing differs; then three rows spoiled on s3 are named.
  const s1Spec = job.specFor(job.plans.find((p) => p.source === "s1")!);
  const clean = await verifyMove(s1Spec, { settle: () => caughtUp(job) });
  assert.equal(clean.map((v) => v.counts), [{ missing: 0, extra: 0, different: 0 }, { missing: 0, extra: 0, different: 0 }]);
  assert.ok(clean.find((v) => v.target === "s3")!.compared > 500);
  // The last keys: caughtUp() touches the first one of each source.
  const fromS1 = (await db("s3").unsafe<{ id: string }[]>("select id from accounts order by id desc")).map((r) => r.id).filter((id) => ownerIn(from, id) === "s1");
  await db("s3").unsafe("update accounts set balance = balance + 1000 where id = $1", [fromS1[0]]);
  await db("s3").unsafe("delete from accounts where id = $1", [fromS1[1]]);
  const stray = Array.from({ length: 10_000 }, (_, i) => `stray-${i}`).find((k) => ownerIn(from, k) === "s1" && ownerIn(to, k) === "s3")!;
  await db("s3").unsafe("insert into accounts values ($1, 5)", [stray]);
  const spoiled = (await verifyMove(s1Spec, { settle: () => caughtUp(job) })).find((v) => v.target === "s3")!;
  assert.equal(spoiled.counts, { missing: 1, extra: 1, different: 1 });
  assert.equal([spoiled.different, spoiled.missing, spoiled.extra], [[fromS1[0]], [fromS1[1]], [stray]]);

  // Cancelling s1's part removes s1's rows from s3 and leaves s2's.
  await job.stop();
  await cancelSourceMove(s1Spec);
  const left = await rows("s3");
  assert.ok(left.length > 500 && left.every((r) => ownerIn(from, r.split("=")[0]) === "s2"), "only s2's rows stay on s3");

  await job.cancel();
  assert.is((await rows("s3")).length, 0, "cancel removed the copied rows");
  for (const shard of ["s1", "s2"]) {
    const [{ slots, pubs }] = await db(shard).unsafe("select (select count(*) from pg_replication_slots)::int as slots, (select count(*) from pg_publication)::int as pubs");
    assert.is(slots, 0, `no slot left on ${shard}`);
    assert.is(pubs, 0, `no publication left on ${shard}`);
  }
  const [{ n }] = await db("s3").unsafe("select count(*)::int as n from shardrouter.reshard_progress");
  assert.is(n, 0, "no progress rows left");
});

test.run();
