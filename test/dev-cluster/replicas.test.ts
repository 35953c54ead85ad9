// Streaming replicas of the local cluster and its fault-injection API, against real PostgreSQL:
// replication of rows and prepared transactions, read-only replicas, pause/resume, promotion and
// the split brain an old primary causes when it comes back, restarts, added replicas, killed runs.
// The router's failover and fencing tests build on exactly these behaviours.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readdir, readFile, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type postgres from "postgres";
import { suite, test } from "uvu";
import * as assert from "uvu/assert";
import { type LocalCluster, type LocalClusterOptions, type LocalNode, startLocalCluster } from "../../server/dev-cluster/local-cluster.js";
import { connect, inTempDir, nodesOf, plain, processesUnder, rejects, scrub, waitUntil, withSql } from "./helpers.js";
import { hook } from "../harness/uvu.js";

const localClusterModule = fileURLToPath(new URL("../../server/dev-cluster/local-cluster.ts", import.meta.url));

// ---- helpers -------------------------------------------------------------------------------------

/** Waits (bounded) until `replica` has replayed everything `primary` has written so far. */
async function replicated(primary: LocalNode, replica: LocalNode, timeoutMs = 15_000): Promise<void> {
  const [{ lsn }] = await withSql(primary, (sql) => sql<{ lsn: string }[]>`select pg_current_wal_lsn()::text as lsn`);
  await withSql(replica, (sql) => waitUntil(`${replica.name} to replay up to ${lsn}`, async () => {
    const [{ ok }] = await sql<{ ok: boolean }[]>`select coalesce(pg_last_wal_replay_lsn() >= ${lsn}::pg_lsn, false) as ok`;
    return ok;
  }, timeoutMs));
}

/** Waits (bounded) until `query` on `node` returns `expected` (plain rows). */
async function eventually(node: LocalNode, query: string, expected: unknown[][], timeoutMs = 15_000): Promise<void> {
  let last: unknown;
  await withSql(node, (sql) => waitUntil(`${node.name}: ${query} = ${JSON.stringify(expected)}`, async () => {
    last = plain(await sql.unsafe(query).values().catch(() => []));
    return JSON.stringify(last) === JSON.stringify(expected);
  }, timeoutMs)).catch((err) => {
    throw new Error(`${(err as Error).message}; last answer ${JSON.stringify(last)}`);
  });
}

async function value<T>(node: LocalNode, query: string): Promise<T> {
  return withSql(node, async (sql) => (await sql.unsafe(query).values())[0][0] as T);
}

const inRecovery = (n: LocalNode) => value<boolean>(n, "select pg_is_in_recovery()");

/** The SQLSTATE of the rejection of `p` (fails if it resolves). */
async function sqlState(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as { code?: string }).code ?? `no code: ${(err as Error).message}`;
  }
  assert.unreachable("expected an error");
  return "";
}

/** Resolves to "timeout" when `p` has not settled within `ms`. */
function within<T>(p: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), ms)))]).finally(() => clearTimeout(timer));
}

/** Files under `dir` whose content includes `secret`. */
async function filesContaining(dir: string, secret: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath ?? entry.path, entry.name);
    const st = await stat(path);
    if (st.size > 1 << 20) continue; // relation files and WAL segments
    if ((await readFile(path, "latin1").catch(() => "")).includes(secret)) found.push(path);
  }
  return found;
}

// ---- one 2-shard cluster with a replica per shard, shared by the suite ---------------------------

const shared = suite("2 shards × 1 replica");
let dir = "";
let cluster: LocalCluster;
const logs: string[] = [];
const start = async (o: Partial<LocalClusterOptions> = {}) =>
  (cluster = await startLocalCluster({ dataDir: dir, shards: 2, log: (l) => logs.push(l), ...o }));

shared.before(hook(async () => {
  dir = await mkdtemp(join(tmpdir(), "shardrouter-replica-test-"));
  await start({ fresh: true, replicas: 1 });
}));
shared.after(hook(async () => {
  await cluster?.stop().catch(() => {});
  if (dir) await scrub(dir);
}));

shared("each shard lists its primary, then shard-N-replica-1; replicas stream through a slot; the password stays private", async () => {
  assert.equal(cluster.shards.map((s) => s.nodes.map((n) => `${n.name}/${n.role}`)),
    [["shard-0-primary/primary", "shard-0-replica-1/replica"], ["shard-1-primary/primary", "shard-1-replica-1/replica"]]);
  const nodes = nodesOf(cluster);
  assert.is(new Set(nodes.map((n) => n.port)).size, nodes.length, "distinct ports");
  for (const n of nodes) assert.ok(n.port >= 15000 && n.port < 32768, `${n.name}: port ${n.port} below the ephemeral range`);
  const state = JSON.parse(await readFile(join(dir, "cluster.json"), "utf8"));
  assert.equal(state.shards[1].nodes.map((n: { name: string; port: number }) => [n.name, n.port]),
    cluster.shards[1].nodes.map((n) => [n.name, n.port]), "cluster.json remembers replicas and their ports");

  for (const s of cluster.shards) {
    const [primary, replica] = s.nodes;
    const rows = await withSql(primary, (sql) => sql`
      select r.application_name, r.state, s.slot_name, s.active
      from pg_stat_replication r join pg_replication_slots s on s.active_pid = r.pid`.values());
    assert.equal(plain(rows), [[replica.name, "streaming", replica.name.replaceAll("-", "_"), true]], `${s.name} streams through its slot`);
    assert.equal(await withSql(replica, (sql) => sql`select slot_name from pg_replication_slots`.values()).then(plain), [],
      "the replica got no copy of its primary's slots");
  }

  // The admin's password (also in each replica's primary_conninfo) and the router's.
  for (const password of [cluster.catalog.password, cluster.routerRole.password]) {
    assert.not.ok(logs.some((l) => l.includes(password)), "the password is never logged");
    for (const f of await filesContaining(dir, password)) {
      const mode = (await stat(f)).mode & 0o777;
      assert.is(mode & 0o077, 0, `${f} holds the password, so it must be private (mode ${mode.toString(8)})`);
    }
    for (const pid of await processesUnder(dir)) {
      const cmd = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
      assert.not.ok(cmd.includes(password), `the password is not on the command line of pid ${pid}`);
    }
  }
  // The nodes were given a SCRAM verifier, never the router's password: not in a server log or a data dir.
  assert.equal(await filesContaining(dir, cluster.routerRole.password), [join(dir, "cluster.json")]);
});

shared("a row written on a primary reaches its replica, which is in recovery and refuses writes (25006)", async () => {
  for (const s of cluster.shards) {
    const [primary, replica] = s.nodes;
    await withSql(primary, (sql) => sql.unsafe(`create table rows_${s.name.replace("-", "_")} (v text); insert into rows_${s.name.replace("-", "_")} values ('${s.name}')`));
    await eventually(replica, `select v from rows_${s.name.replace("-", "_")}`, [[s.name]]);
    assert.is(await inRecovery(primary), false);
    assert.is(await inRecovery(replica), true);
    assert.is(await withSql(replica, (sql) => sqlState(sql`insert into ${sql(`rows_${s.name.replace("-", "_")}`)} values ('no')`)), "25006");
  }
});

shared("replicas allow at least the primary's max_prepared_transactions; prepared transactions replicate", async () => {
  const [primary, replica] = cluster.shards[0].nodes;
  const setting = "select current_setting('max_prepared_transactions')::int";
  const [p, r] = [await value<number>(primary, setting), await value<number>(replica, setting)];
  assert.ok(p > 0 && r >= p, `replica ${r} >= primary ${p} > 0`);

  await withSql(primary, async (sql) => {
    await sql`create table prepared (v text)`;
    for (const gid of ["lc_commit", "lc_rollback"]) {
      await sql.begin(async (tx) => {
        await tx.unsafe(`insert into prepared values ('${gid}')`);
        await tx.unsafe(`prepare transaction '${gid}'`);
      });
    }
  });
  await replicated(primary, replica);
  // A hot standby replays PREPARE but lists nothing in pg_prepared_xacts (they show up on promotion,
  // see the promotion test); the rows stay invisible until the decision replicates.
  assert.equal(await withSql(replica, (sql) => sql`select v from prepared`.values()).then(plain), []);
  await withSql(primary, async (sql) => {
    await sql.unsafe("commit prepared 'lc_commit'");
    await sql.unsafe("rollback prepared 'lc_rollback'");
  });
  await eventually(replica, "select v from prepared", [["lc_commit"]]);
});

shared("pauseNode hangs new connections and running queries (1 s client timeout); resumeNode brings them back", async () => {
  const [primary, replica] = cluster.shards[1].nodes;
  const held = connect(primary);
  let fresh: postgres.Sql | undefined;
  try {
    assert.equal(plain(await held`select 1`.values()), [[1]]);
    await cluster.pauseNode(primary.name);
    await cluster.pauseNode(primary.name); // idempotent

    fresh = connect(primary, { connect_timeout: 1 });
    const t0 = Date.now();
    await rejects(fresh`select 1`, /CONNECT_TIMEOUT/);
    assert.ok(Date.now() - t0 < 5_000, "the client's own timeout ends the attempt");
    const pending = held`select 2`.values();
    assert.is(await within(pending, 1_000), "timeout", "a query on an open connection hangs too: the backend is stopped");

    await cluster.resumeNode(primary.name);
    await cluster.resumeNode(primary.name); // a no-op
    assert.equal(plain((await within(pending, 10_000)) as unknown[][]), [[2]], "the hung query completes");
    assert.equal(plain(await fresh`select 1`.values()), [[1]], "new connections work again");
    // Replication carries on.
    await held`insert into rows_shard_1 values ('after pause')`;
    await eventually(replica, "select count(*)::int from rows_shard_1", [[2]]);
  } finally {
    await cluster.resumeNode(primary.name);
    await Promise.all([held.end({ timeout: 1 }), fresh?.end({ timeout: 1 })]);
  }
});

shared("stop() leaves no process; a restart keeps replicas, ports and streaming; fewer replicas is refused", async () => {
  const before = nodesOf(cluster).map((n) => [n.name, n.port, n.role]);
  await cluster.stop();
  assert.equal(await processesUnder(dir), [], "no postgres process left right after stop()");
  await rejects(start({ replicas: 0 }), /holds 1 replica\(s\) per shard but 0 were asked for/);

  await start(); // replicas: as many as remembered
  assert.equal(nodesOf(cluster).map((n) => [n.name, n.port, n.role]), before);
  for (const s of cluster.shards) {
    const [primary, replica] = s.nodes;
    assert.is(await inRecovery(replica), true);
    const table = `rows_${s.name.replace("-", "_")}`;
    await withSql(primary, (sql) => sql`insert into ${sql(table)} values ('after restart')`);
    await eventually(replica, `select count(*)::int from ${table} where v = 'after restart'`, [[1]]);
  }
});

// ---- own clusters --------------------------------------------------------------------------------

test("promote() makes a replica writable; the old primary started again is a second writable node (split brain)", () =>
  inTempDir(async (_dir, start, logs) => {
    const c = await start({ fresh: true, shards: 1, replicas: 1 });
    const [primary, replica] = c.shards[0].nodes;
    await withSql(primary, async (sql) => {
      await sql`create table t (v text)`;
      await sql`insert into t values ('before failover')`;
      await sql.begin(async (tx) => {
        await tx`insert into t values ('in doubt')`;
        await tx.unsafe("prepare transaction 'lc_in_doubt'");
      });
    });
    await replicated(primary, replica);
    await rejects(c.promote(primary.name), /not in recovery/);

    // Failover: the primary goes away, the replica is promoted and takes writes.
    await c.stopNode(primary.name);
    await c.promote(replica.name);
    assert.is(await inRecovery(replica), false);
    await withSql(replica, (sql) => sql`insert into t values ('on the promoted replica')`);
    assert.equal(await withSql(replica, (sql) => sql`select gid from pg_prepared_xacts`.values()).then(plain), [["lc_in_doubt"]],
      "a transaction prepared on the old primary survives the failover, in doubt");
    await rejects(c.promote(replica.name), /not in recovery/);

    // The old primary comes back as it would in real life: writable, on its own timeline.
    await c.startNode(primary.name);
    assert.is(await inRecovery(primary), false, "the old primary is writable");
    assert.is(await inRecovery(replica), false, "and so is the promoted replica");
    await withSql(primary, (sql) => sql`insert into t values ('on the old primary')`);
    const rows = (n: LocalNode) => withSql(n, (sql) => sql`select v from t order by v`.values()).then(plain);
    assert.equal(await rows(primary), [["before failover"], ["on the old primary"]]);
    assert.equal(await rows(replica), [["before failover"], ["on the promoted replica"]]);
    assert.equal(await withSql(primary, (sql) => sql`select gid from pg_prepared_xacts`.values()).then(plain), [["lc_in_doubt"]],
      "both sides hold the in-doubt transaction");
    // Roles in the API are the configured ones; the nodes themselves say otherwise.
    assert.equal(c.shards[0].nodes.map((n) => n.role), ["primary", "replica"]);

    // A restart keeps the split: the promoted replica has no standby.signal any more.
    await c.stop();
    const again = await start();
    assert.ok(logs.some((l) => l.includes(`${replica.name}: configured as a replica of ${primary.name} but was promoted earlier`)));
    assert.equal([await inRecovery(again.shards[0].nodes[0]), await inRecovery(again.shards[0].nodes[1])], [false, false]);
    await again.stop();
  }));

test("more replicas than remembered are cloned from the primary (one that crashed too) and stream", () =>
  inTempDir(async (_dir, start, logs) => {
    const first = await start({ fresh: true, shards: 2 });
    assert.equal(first.shards.map((s) => s.nodes.length), [1, 1], "no replicas by default");
    for (const s of first.shards) await withSql(s.nodes[0], (sql) => sql`create table kept as select ${s.name}::text as v`);
    // shard-0's primary crashes: its data dir is not a consistent copy until recovery has run.
    await first.stopNode("shard-0-primary", "immediate");
    await first.stop();

    const second = await start({ replicas: 1 });
    assert.ok(logs.some((l) => l.includes("shard-0-primary: did not shut down cleanly")));
    assert.not.ok(logs.some((l) => l.includes("shard-1-primary: did not shut down cleanly")));
    assert.ok(logs.some((l) => l.includes("cloning shard-0-replica-1 from shard-0-primary")));
    for (const s of second.shards) {
      const [primary, replica] = s.nodes;
      assert.is(replica.name, `${s.name}-replica-1`);
      assert.equal(await withSql(replica, (sql) => sql`select v from kept`.values()).then(plain), [[s.name]], "the clone has the data");
      await withSql(primary, (sql) => sql`insert into kept values ('new')`);
      await eventually(replica, "select count(*)::int from kept", [[2]]);
    }
    await second.stop();

    const third = await start({ replicas: 2 });
    assert.equal(third.shards[1].nodes.map((n) => n.name), ["shard-1-primary", "shard-1-replica-1", "shard-1-replica-2"]);
    const [primary, , replica2] = third.shards[1].nodes;
    await withSql(primary, (sql) => sql`insert into kept values ('newer')`);
    await eventually(replica2, "select count(*)::int from kept", [[3]]);

    await rejects(start({ replicas: 9 }), /replicas must be an integer from 0 to 8/);
    await third.stop();
  }));

test("a run killed while a node was paused leaves stopped processes that the next start thaws and replaces", () =>
  inTempDir(async (dir, start) => {
    const code = `import { startLocalCluster } from ${JSON.stringify(localClusterModule)};
      const c = await startLocalCluster({ dataDir: ${JSON.stringify(dir)}, shards: 1, replicas: 1, fresh: true });
      await c.pauseNode("shard-0-replica-1");
      console.log("READY");
      setInterval(() => {}, 60_000);`;
    const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on("data", (d) => { if (String(d).includes("READY")) resolve(); });
        child.once("exit", (c) => reject(new Error(`child exited early (code ${c})`)));
      });
      child.kill("SIGKILL");
      // pdeathsig stops the others; the paused replica cannot act on its SIGINT.
      const replicaDir = join(dir, "shard-0-replica-1");
      await waitUntil("the unpaused servers to exit", async () =>
        (await processesUnder(dir)).length > 0 && (await processesUnder(replicaDir)).length === (await processesUnder(dir)).length);
    } finally {
      child.kill("SIGKILL");
    }

    const c = await start({ shards: 1 });
    for (const n of nodesOf(c)) assert.equal(await withSql(n, (sql) => sql`select 1 as x`.values()).then(plain), [[1]], n.name);
    assert.is(await inRecovery(c.shards[0].nodes[1]), true);
    await c.stop();
    assert.equal(await processesUnder(dir), []);
  }));

shared.run();
test.run();
