// NodePool against a real server: what its connections of their own (isolated statements and
// transactions) cost in slots, and that they give them back without waiting out a timeout; a
// reservation that a new generation of connections (a new shard map epoch) overtakes is made again
// on the new one instead of waiting for the old one to end.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type postgres from "postgres";
import * as assert from "uvu/assert";
import { type LocalCluster, startLocalCluster } from "../../server/dev-cluster/local-cluster.js";
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

test("a reservation waiting on a generation that setEpoch retires is made on the new generation", async () => {
  // Both connections of the current generation busy behind the pool's back, so postgres.js queues
  // the reservation (as it does when a connection is a moment late handing itself back).
  const current = (pool as unknown as { sql: postgres.Sql }).sql;
  const sleeps = [current.unsafe("select pg_sleep(20)"), current.unsafe("select pg_sleep(20)")];
  for (const q of sleeps) q.catch(() => {});
  await waitFor("both connections busy", async () => {
    const [{ n }] = await pool.probe<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where query = 'select pg_sleep(20)' and state = 'active'`;
    return n === 2 ? true : undefined;
  });
  const reserving = pool.reserve(AbortSignal.timeout(15_000));
  pool.setEpoch(7);
  const conn = await reserving;
  try {
    let epoch = "";
    await conn.start("select current_setting('shardrouter.epoch')", [], (cells) => { epoch = String(cells[0]); }).done;
    assert.is(epoch, "7", "the connection belongs to the new generation");
  } finally {
    conn.release();
    for (const q of sleeps) await q.cancel();
  }
  assert.is(pool.admission.inUse, 0, "its slot came back");
});

test.run();
