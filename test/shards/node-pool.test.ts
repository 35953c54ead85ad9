// NodePool against a real server: what its connections of their own (isolated statements and
// transactions) cost in slots, and that they give them back without waiting out a timeout; a new
// generation of connections (a new shard map epoch); and that every statement settles, pipelined on a
// connection that is lost, or running on a backend that is paused and cannot answer its cancel.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as assert from "uvu/assert";
import { type LocalCluster, startLocalCluster } from "../../server/dev-cluster/local-cluster.js";
import { isConnectionError } from "../../server/execution/postgres-errors.js";
import { NodePool } from "../../server/shards/node-pool.js";
import { hook, test } from "../harness/uvu.js";
import { waitFor } from "../harness/router-cluster.js";

let dataDir: string;
let cluster: LocalCluster;
let pool: NodePool;

test.before(hook(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "shardrouter-node-pool-"));
  cluster = await startLocalCluster({ dataDir, shards: 1, replicas: 0 });
  const node = cluster.shards[0].nodes[0];
  pool = new NodePool(
    { name: node.name, host: node.host, port: node.port, database: node.database, user: node.user, password: node.password, role: "primary" },
    // A minute to connect: any wait on that timeout shows as a slot that does not come back.
    { max: 2, maxWaiting: 4, connectTimeoutMs: 60_000, idleTimeoutMs: 60_000, statementTimeoutMs: 30_000, maxPreparedStatements: 10, maxIsolated: 1 },
  );
}));

test.after(hook(async () => {
  await pool?.close();
  await cluster?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}));

test("an isolated transaction's connection closes, and its slot comes back, as soon as it is released", async () => {
  for (let i = 0; i < 3; i++) {
    const conn = await pool.reserve(new AbortController().signal, { isolated: true });
    assert.is(pool.isolation.inUse, 1);
    for (const sql of ["begin", "select set_config('search_path', 'pg_catalog', false)", "commit"]) {
      await conn.start(sql, [], () => {}).done;
    }
    conn.release();
    // Before the fix, end() waited out connectTimeoutMs (a minute here) for the still-reserved connection.
    await waitFor("the isolation slot to come back", () => (pool.isolation.inUse === 0 ? true : undefined));
  }
});

test("after setEpoch new connections carry the new epoch, and a busy old one closes when handed back", async () => {
  const old = await pool.reserve(new AbortController().signal);
  await old.start("select 1", [], () => {}).done;
  pool.setEpoch(7);
  const conn = await pool.reserve(new AbortController().signal);
  try {
    let epoch = "";
    await conn.start("select current_setting('shardrouter.epoch')", [], (cells) => { epoch = String(cells[0]); }).done;
    assert.is(epoch, "7", "the connection belongs to the new generation");
  } finally {
    conn.release();
  }
  let pid = "";
  await old.start("select pg_backend_pid()", [], (cells) => { pid = String(cells[0]); }).done;
  old.release();
  await waitFor("the old generation's connection to close", async () => {
    const rows = await pool.probe`select 1 from pg_stat_activity where pid = ${Number(pid)}`;
    return rows.length === 0 ? true : undefined;
  });
  assert.is(pool.admission.inUse, 0, "both slots came back");
});

test("statements pipelined on a reserved connection all settle when the connection is lost", async () => {
  const conn = await pool.reserve(new AbortController().signal);
  const sent = Promise.allSettled(["begin", "select pg_sleep(20)", "select 1", "commit"].map((sql) => conn.start(sql, [], () => {}).done));
  await waitFor("the sleep to run", async () => {
    const rows = await pool.probe`select pid from pg_stat_activity where query = 'select pg_sleep(20)' and state = 'active'`;
    return rows.length ? true : undefined;
  });
  await pool.probe`select pg_terminate_backend(pid) from pg_stat_activity where query = 'select pg_sleep(20)'`;
  const outcomes = await sent;
  assert.is(outcomes[0].status, "fulfilled", "begin was answered before the loss");
  assert.is(outcomes[1].status, "rejected", "the sleep was terminated (57P01)");
  for (const o of outcomes.slice(2)) {
    assert.is(o.status, "rejected");
    assert.ok(isConnectionError((o as PromiseRejectedResult).reason), String((o as PromiseRejectedResult).reason));
  }
  conn.release();
  assert.is(pool.admission.inUse, 0, "its slot came back");
});

test("a statement whose backend is paused settles after its cancel, within connectTimeoutMs, and leaves nothing open", async () => {
  const node = cluster.shards[0].nodes[0];
  const quick = new NodePool(
    { name: node.name, host: node.host, port: node.port, database: node.database, user: node.user, password: node.password, role: "primary" },
    { max: 2, maxWaiting: 4, connectTimeoutMs: 500, idleTimeoutMs: 60_000, statementTimeoutMs: 30_000, maxPreparedStatements: 10, maxIsolated: 1 },
  );
  let pid = 0;
  try {
    const running = quick.start("select pg_sleep(30)", [], () => {});
    running.done.catch(() => {});
    await waitFor("the statement to run", async () => {
      const rows = await pool.probe`select pid from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'`;
      pid = rows.length ? Number(rows[0].pid) : 0;
      return pid ? true : undefined;
    });
    process.kill(pid, "SIGSTOP"); // the backend takes the cancel signal but cannot act on it
    await running.cancel();
    const outcome = await Promise.race([
      running.done.then(() => "answered", (err) => (isConnectionError(err) ? "connection closed" : String(err))),
      new Promise((resolve) => setTimeout(resolve, 10_000, "still pending")).then((x) => x),
    ]);
    assert.is(outcome, "connection closed");
    assert.is(quick.openConnections, 0, "the connection was closed, not kept");
  } finally {
    if (pid) process.kill(pid, "SIGCONT");
    await quick.close();
  }
});

test.run();
