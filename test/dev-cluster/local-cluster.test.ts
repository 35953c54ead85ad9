// The local cluster manager against real PostgreSQL: start, query, stop without leftovers, restart
// on the same data, recovery from killed servers and killed runs, fresh wipes.
// Every test cleans up in a finally (stop, then kill anything still running in its dir, then rm).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { pgBinaries, postgresOsUser } from "../../server/dev-cluster/pg-install.js";
import { startLocalCluster } from "../../server/dev-cluster/local-cluster.js";
import { alive, inTempDir, nodesOf, plain, postmasterPid, processesUnder, rejects, waitUntil, withSql } from "./helpers.js";

const localClusterModule = fileURLToPath(new URL("../../server/dev-cluster/local-cluster.ts", import.meta.url));

// ---- tests ---------------------------------------------------------------------------------------

test("a 2-shard cluster starts; every node answers and can run two-phase commit; stop leaves nothing", () =>
  inTempDir(async (dir, start, logs) => {
    const c = await start({ fresh: true });
    assert.equal(c.shards.map((s) => s.name), ["shard-0", "shard-1"]);
    assert.equal(c.shards.map((s) => s.nodes.map((n) => `${n.name}/${n.role}`)), [["shard-0-primary/primary"], ["shard-1-primary/primary"]]);
    assert.is(c.catalog.name, "catalog");
    const nodes = nodesOf(c);
    assert.is(new Set(nodes.map((n) => n.port)).size, nodes.length, "distinct ports");
    for (const n of nodes) {
      assert.is(n.host, "127.0.0.1");
      assert.is(n.database, "shardrouter");
      assert.is(n.user, "postgres");
      assert.ok(n.port >= 15000 && n.port <= 32000, `port ${n.port} outside 15000-32000`);
      assert.ok(n.password.length >= 20);
      const row = await withSql(n, async (sql) => {
        const [r] = await sql`select 1 as one, current_setting('max_prepared_transactions')::int as mpt,
          current_setting('listen_addresses') as listen, datcollate as collate, pg_encoding_to_char(encoding) as enc
          from pg_database where datname = current_database()`;
        // Two-phase commit end to end (gid from safe characters; PREPARE takes no bind parameters).
        await sql`create table t2pc (id int)`;
        await sql.begin(async (tx) => {
          await tx`insert into t2pc values (1)`;
          await tx.unsafe("prepare transaction 'lc_test_1'");
        });
        await sql.unsafe("commit prepared 'lc_test_1'");
        const [{ n: count }] = await sql`select count(*)::int as n from t2pc`;
        return { ...r, count };
      });
      assert.equal(row, { one: 1, mpt: 64, listen: "127.0.0.1", collate: "C", enc: "UTF8", count: 1 }, n.name);
    }
    const stateMode = (await stat(join(dir, "cluster.json"))).mode & 0o777;
    assert.is(stateMode, 0o600, "cluster.json holds the password: 0600");
    assert.ok((await processesUnder(dir)).length >= nodes.length * 5, "postgres processes are visible while running");

    await c.stop();
    assert.equal(await processesUnder(dir), [], "no postgres process left right after stop()");
    await c.stop(); // idempotent
    for (const n of nodes) assert.not.ok(await readFile(join(n.dataDir, "postmaster.pid")).catch(() => undefined), `${n.name} lock file removed`);
    assert.ok(logs.length > 0);
    assert.not.ok(logs.some((l) => l.includes(nodes[0].password)), "the password is never logged");
    assert.is(c.routerRole.user, "shardrouter_router", "the router gets its own login (router-role.test.ts)");
    assert.not.ok(logs.some((l) => l.includes(c.routerRole.password)), "nor the router's");
  }));

test("a restart of the same dataDir reuses ports and password and keeps data; shrinking is refused", () =>
  inTempDir(async (_dir, start) => {
    const first = await start({ fresh: true, maxPreparedTransactions: 8, maxConnections: 30 });
    await withSql(first.shards[1].nodes[0], (sql) => sql`create table kept (v text); insert into kept values ('shard-1')`.simple());
    await withSql(first.catalog, (sql) => sql`create table kept (v text); insert into kept values ('catalog')`.simple());
    await first.stop();

    const second = await start();
    assert.equal(nodesOf(second).map((n) => [n.name, n.port, n.password]), nodesOf(first).map((n) => [n.name, n.port, n.password]));
    assert.equal(second.routerRole, first.routerRole, "the router's login is kept too");
    assert.equal(await withSql(second.shards[1].nodes[0], (sql) => sql`select v from kept`.values()).then(plain), [["shard-1"]]);
    assert.equal(await withSql(second.catalog, (sql) => sql`select v from kept`.values()).then(plain), [["catalog"]]);
    // Settings come from the options of each start, not from the first one.
    assert.equal(await withSql(second.catalog, (sql) => sql`select current_setting('max_prepared_transactions')::int`.values()).then(plain), [[64]]);
    await second.stop();

    await rejects(start({ shards: 1 }), /holds 2 shards but 1 were asked for/);
  }));

test("a SIGKILLed postmaster leaves a stale postmaster.pid that neither startNode nor the next start trips over", () =>
  inTempDir(async (_dir, start, logs) => {
    const c = await start({ fresh: true });
    const node = c.shards[0].nodes[0];
    const kill9 = async () => {
      const pid = await postmasterPid(node);
      process.kill(pid, "SIGKILL");
      await waitUntil(`postmaster ${pid} to die`, async () => !(await alive(pid)));
      assert.ok(await readFile(join(node.dataDir, "postmaster.pid"), "utf8").catch(() => undefined), "stale postmaster.pid is left behind");
      return pid;
    };

    // In the same process: restart just that node.
    await kill9();
    await c.startNode(node.name);
    assert.equal(await withSql(node, (sql) => sql`select 1 as x`.values()).then(plain), [[1]]);
    assert.ok(logs.some((l) => l.includes("exited unexpectedly")), "the unexpected exit is reported");

    // Across runs: kill it again, stop the rest, start the whole cluster again.
    const killed = await kill9();
    await c.stop();
    const again = await start();
    assert.ok(logs.some((l) => l.includes(`removing stale postmaster.pid (pid ${killed}`)));
    for (const n of nodesOf(again)) assert.equal(await withSql(n, (sql) => sql`select 1 as x`.values()).then(plain), [[1]], n.name);

    // Fault-test helpers: an immediate stop, then a start that runs crash recovery.
    await again.stopNode(node.name, "immediate");
    await rejects(withSql(node, (sql) => sql`select 1`), /ECONNREFUSED|connect/);
    await again.startNode(node.name);
    assert.equal(await withSql(node, (sql) => sql`select 1 as x`.values()).then(plain), [[1]]);
    await rejects(again.startNode("no-such-node"), /no node named no-such-node/);
    await again.stop();
  }));

test("a SIGKILLed Node process takes its postgres servers with it; a live leftover server is stopped and replaced", () =>
  inTempDir(async (dir, start, logs) => {
    // A run in another Node process, SIGKILLed once its cluster is up.
    const code = `import { startLocalCluster } from ${JSON.stringify(localClusterModule)};
      await startLocalCluster({ dataDir: ${JSON.stringify(dir)}, shards: 2, fresh: true });
      console.log("READY");
      setInterval(() => {}, 60_000);`;
    const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on("data", (d) => { if (String(d).includes("READY")) resolve(); });
        child.once("exit", (c) => reject(new Error(`child exited early (code ${c})`)));
      });
      assert.ok((await processesUnder(dir)).length > 0);
      child.kill("SIGKILL");
      // setpriv --pdeathsig: the kernel tells each postmaster, which shuts down fast on its own.
      await waitUntil("postgres of the killed run to exit", async () => (await processesUnder(dir)).length === 0);
    } finally {
      child.kill("SIGKILL");
    }

    // A leftover that nothing will stop (as when setpriv is missing): a daemonized pg_ctl server.
    const state = JSON.parse(await readFile(join(dir, "cluster.json"), "utf8"));
    const pgdata = join(dir, "shard-1-primary", "data");
    const runAs = await postgresOsUser();
    const pgCtl = (await pgBinaries()).pg_ctl;
    await new Promise<void>((resolve, reject) => {
      const p = spawn(pgCtl, ["start", "-w", "-D", pgdata, "-l", join(pgdata, "leftover.log"),
        "-o", `-p ${state.shards[1].nodes[0].port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=`],
        { uid: runAs.uid, gid: runAs.gid, stdio: "ignore" });
      p.once("exit", (c) => (c === 0 ? resolve() : reject(new Error(`pg_ctl start exited ${c}`))));
    });
    const leftover = Number((await readFile(join(pgdata, "postmaster.pid"), "utf8")).split("\n")[0]);
    assert.ok(await alive(leftover));

    const c = await start();
    assert.not.ok(await alive(leftover), "the leftover postmaster was stopped");
    assert.ok(logs.some((l) => l.includes(`stopping leftover postgres (pid ${leftover})`)));
    const node = c.shards[1].nodes[0];
    assert.is.not(await postmasterPid(node), leftover);
    assert.equal(await withSql(node, (sql) => sql`select 1 as x`.values()).then(plain), [[1]]);
    await c.stop();
    assert.equal(await processesUnder(dir), []);
  }));

test("fresh: true wipes data and cluster.json; a remembered port taken by someone else is a clear error", () =>
  inTempDir(async (dir, start) => {
    const first = await start({ fresh: true, shards: 1 });
    await withSql(first.catalog, (sql) => sql`create table gone (id int)`);
    await first.stop();

    // Someone else now listens on the catalog's port.
    const squatter = net.createServer();
    await new Promise<void>((r) => squatter.listen(first.catalog.port, "127.0.0.1", r));
    try {
      await rejects(start({ shards: 1 }), new RegExp(`port ${first.catalog.port} of node catalog .*in use`));
    } finally {
      await new Promise((r) => squatter.close(r));
    }

    const wiped = await start({ fresh: true, shards: 1 });
    assert.is.not(wiped.catalog.password, first.catalog.password, "a new password");
    assert.is.not(wiped.routerRole.password, first.routerRole.password, "and a new one for the router");
    assert.equal(await withSql(wiped.catalog, (sql) => sql`select to_regclass('gone') is null as gone`.values()).then(plain), [[true]]);
    await wiped.stop();

    // fresh never wipes a directory that is not a cluster made here.
    const other = join(dir, "not-a-cluster");
    await rm(other, { recursive: true, force: true });
    await mkdir(other);
    await writeFile(join(other, "precious.txt"), "keep me");
    await rejects(startLocalCluster({ dataDir: other, shards: 1, fresh: true }), /refusing to wipe/);
    assert.is(await readFile(join(other, "precious.txt"), "utf8"), "keep me");
  }));

test.run();
