// The paths tools/patch-postgres.mjs changes in postgres.js 3.4.9, against a real server, with the
// router's own settings (fetch_types: false). Each test hangs or crashes the process without its patch.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as assert from "uvu/assert";
import postgres from "postgres";
import { type LocalCluster, type LocalNode, startLocalCluster } from "../../server/dev-cluster/local-cluster.js";
import { hook, test } from "../harness/uvu.js";
import { waitFor } from "../harness/router-cluster.js";

let dataDir: string;
let cluster: LocalCluster;
let node: LocalNode;
let admin: postgres.Sql;
const clients: postgres.Sql[] = [];

function client(extra: Partial<postgres.Options<Record<string, never>>> = {}): postgres.Sql {
  const sql = postgres({
    host: node.host, port: node.port, database: node.database, user: node.user, password: node.password,
    fetch_types: false, onnotice: () => {}, ...extra,
  });
  clients.push(sql);
  return sql;
}

async function one(sql: postgres.Sql | postgres.ReservedSql, text: string): Promise<string> {
  const rows = await sql.unsafe(text).values();
  return String(rows[0][0]);
}

/** Fails instead of hanging: without patch 2, reserve() never settles. */
function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms); })])
    .finally(() => clearTimeout(timer));
}

test.before(hook(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "shardrouter-patches-"));
  cluster = await startLocalCluster({ dataDir, shards: 1, replicas: 0 });
  node = cluster.shards[0].nodes[0];
  admin = client({ max: 1 });
}));

test.after(hook(async () => {
  await Promise.all(clients.map((c) => c.end({ timeout: 1 })));
  await cluster?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}));

test("patch 2: reserve() on a pool that has never connected settles", async () => {
  const sql = client({ max: 2 });
  const conn = await within(5000, "reserve on a cold pool", sql.reserve());
  assert.is(await one(conn, "select 1 as x"), "1");
  conn.release();
});

test("patch 2: reserve() after the pool's connections idled out settles", async () => {
  let closes = 0;
  const sql = client({ max: 2, idle_timeout: 0.2, onclose: () => { closes++; } });
  await sql.unsafe("select 1");
  await waitFor("the idle connection to close", () => (closes > 0 ? true : undefined));
  const conn = await within(5000, "reserve after idle close", sql.reserve());
  assert.is(await one(conn, "select 2 as x"), "2");
  conn.release();
});

test("patch 2: reserve() after the server restarted settles", async () => {
  const sql = client({ max: 2 });
  await sql.unsafe("select 1");
  await cluster.stopNode(node.name, "immediate");
  await cluster.startNode(node.name);
  const conn = await within(10_000, "reserve after a restart", (async () => {
    for (;;) {
      try {
        return await sql.reserve();
      } catch {
        // the first attempt may meet the dead socket; a new connection must then be served
      }
    }
  })());
  assert.is(await one(conn, "select 3 as x"), "3");
  conn.release();
});

test("patch 1: a statement on a reserved connection whose socket closed is rejected, not written to a null socket", async () => {
  let closed = false;
  const sql = client({ max: 1, onclose: () => { closed = true; } });
  const conn = await within(5000, "reserve", sql.reserve());
  const [{ pid }] = await conn.unsafe("select pg_backend_pid() as pid");
  await admin.unsafe("select pg_terminate_backend($1)", [pid]);
  await waitFor("the reserved connection to close", () => (closed ? true : undefined));
  const err = await conn.unsafe("select 1").then(() => undefined, (e: { code?: string }) => e);
  assert.ok(err, "the statement must fail");
  assert.ok(["CONNECTION_CLOSED", "CONNECTION_DESTROYED"].includes(String(err!.code)), String(err!.code));
  // The process is still here to assert this: unpatched, the write threw from a timer and ended it.
  assert.is(await one(admin, "select 4 as x"), "4");
});

test("patch 3: query.cancel() returns a promise that settles once the cancel request has been taken", async () => {
  const sql = client({ max: 1 });
  const query = sql.unsafe("select pg_sleep(30)");
  const failed = query.then(() => undefined, (e: { code?: string }) => e.code);
  await waitFor("the statement to run", async () =>
    ((await admin.unsafe("select 1 from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'")).length ? true : undefined));
  const sent = query.cancel() as unknown;
  assert.ok(sent instanceof Promise, "cancel() gives the request's promise");
  await sent;
  assert.is(await failed, "57014");
});

test("patch 4: cancel() on a query that already ended settles at once and sends nothing", async () => {
  const sql = client({ max: 1 });
  const query = sql.unsafe("select 5 as x");
  assert.is(String((await query)[0].x), "5");
  await within(5000, "cancel of an ended query", query.cancel() as unknown as Promise<void>);
  assert.is(await one(sql, "select 6 as x"), "6");
});

test("patch 4: a query cancelled before it reached a connection does not take the connection with it", async () => {
  const sql = client({ max: 1 });
  await sql.unsafe("select 1"); // a connection open and idle
  const early = sql.unsafe("select 7 as x");
  const failed = early.then(() => undefined, (e: { code?: string }) => e.code);
  early.execute();
  await early.cancel(); // in the same tick: the query is not on the connection yet
  assert.is(await failed, "57014");
  // Unpatched, the pool's only connection was parked as "full" with nothing running: this never answered.
  assert.is(await within(5000, "the next query on the pool", one(sql, "select 8 as x")), "8");

  const conn = await within(5000, "reserve", sql.reserve());
  const inside = conn.unsafe("select 9 as x");
  const failedInside = inside.then(() => undefined, (e: { code?: string }) => e.code);
  inside.execute();
  await inside.cancel();
  assert.is(await failedInside, "57014");
  assert.is(await within(5000, "the next query on the reserved connection", one(conn, "select 10 as x")), "10");
  conn.release();
});

test("patch 6: after a COPY TO read slower than the server sends, the connection answers its next statement", async () => {
  const sql = client({ max: 1 });
  const conn = await within(5000, "reserve", sql.reserve());
  const rows = await conn.unsafe("copy (select g, repeat('x', 2000) from generate_series(1, 2000) g) to stdout").readable();
  const lines = await within(10_000, "reading the COPY", (async () => {
    let n = 0;
    for await (const chunk of rows as AsyncIterable<Buffer>) {
      n += chunk.toString().split("\n").length - 1;
      await new Promise((r) => setImmediate(r)); // a slow reader: the socket pauses
    }
    return n;
  })());
  assert.is(lines, 2000);
  // Unpatched, the socket stayed paused after CopyDone and this never answered.
  assert.is(await within(5000, "the statement after the COPY", one(conn, "select 11 as x")), "11");
  conn.release();
});

test("patch 5: a cancel request that arrives after its query ended does not cancel the connection's next query", async () => {
  const sql = client({ max: 1 });
  await sql.unsafe("select 1");
  const postmaster = Number(readFileSync(join(node.dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
  const first = sql.unsafe("select pg_sleep(0.3), 'first' as v");
  const firstDone = first.then(() => "done", (e: { code?: string }) => e.code);
  await waitFor("the first query to run", async () =>
    ((await admin.unsafe("select 1 from pg_stat_activity where query like 'select pg_sleep(0.3), ''first''%' and state = 'active'")).length ? true : undefined));
  // The postmaster stopped: backends go on, but the cancel request (a new connection) waits to be accepted.
  process.kill(postmaster, "SIGSTOP");
  let delivered: Promise<unknown>;
  let next: Promise<string | undefined>;
  try {
    delivered = (first.cancel() as unknown as Promise<unknown>).catch(() => undefined);
    assert.is(await firstDone, "done", "the first query ended before its cancel request arrived");
    next = one(sql, "select pg_sleep(0.3), 'next' as v").then(() => undefined, (e: { code?: string }) => String(e.code));
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r)); // unpatched, the next query is on the wire now
  } finally {
    process.kill(postmaster, "SIGCONT");
  }
  await within(10_000, "the late cancel request", delivered);
  assert.is(await within(10_000, "the next query", next), undefined, "the next query must not be cancelled");
});

test.run();
