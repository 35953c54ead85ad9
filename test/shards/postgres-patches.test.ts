// The paths tools/patch-postgres.mjs changes in postgres.js 3.4.9, against a real server, with the
// router's own settings (fetch_types: false). Each test hangs or crashes the process without its patch.
import { mkdtempSync, rmSync } from "node:fs";
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

test.run();
