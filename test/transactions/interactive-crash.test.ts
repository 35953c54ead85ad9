// Interactive transactions when a process dies: a client killed mid-transaction (the router cancels
// its statement and rolls back at the idle timeout), and a router killed with a transaction open
// (Postgres rolls back when the connection drops). Either way the row's lock is released and its
// value unchanged. Waits are on conditions, never sleeps.
import { spawn } from "node:child_process";
import type postgres from "postgres";
import * as assert from "uvu/assert";
import { plainRows } from "../e2e/values.js";
import { scrape } from "../observability/scrape.js";
import { startRouterProcess } from "../harness/router-process.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

const key = "crash-key";
let t: TestRouter;
let admin: postgres.Sql;

test.before(hook(async () => {
  t = await startTestRouter({ shards: 1 });
  admin = t.direct(t.cluster.shards[0].nodes[0]);
  await admin`create table items (id text primary key, n int not null)`;
  await admin`insert into items values ('client', 1), ('router', 1)`;
}));
test.after(hook(async () => { await t?.stop(); }));

async function rowValue(id: string): Promise<number> {
  const [{ n }] = await admin<{ n: number }[]>`select n from items where id = ${id}`;
  return n;
}

/** Another writer: waits for the row's lock (up to 10 s), then sets it. */
async function writeAsAnother(id: string, n: number): Promise<void> {
  await admin.begin(async (tx) => {
    await tx`set local lock_timeout = '10s'`;
    await tx`update items set n = ${n} where id = ${id}`;
  });
}

async function active(marker: string): Promise<number> {
  const rows = await admin`select 1 from pg_stat_activity where query like ${`%${marker}%`} and state = 'active' and pid <> pg_backend_pid()`;
  return rows.length;
}

test("a client SIGKILLed mid-transaction: its statement is cancelled, the router rolls back at the idle timeout, nothing leaks", async () => {
  const before = (await scrape(t.router.url)).value("shardrouter_interactive_transactions_ended_total", { reason: "idle_timeout" });
  const child = spawn(process.execPath, ["--import", "tsx", new URL("./interactive-client.ts", import.meta.url).pathname, t.router.url, key, "client", "1500"], {
    cwd: new URL("../..", import.meta.url).pathname, stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const exited = new Promise<string>((resolve) => child.once("exit", (code, signal) => resolve(signal ?? `exit ${code}`)));
  try {
    await waitFor("the client to be inside its long statement", async () => {
      if (child.exitCode !== null) throw new Error(`the client ended early:\n${out}`);
      return out.includes("updated") && (await active("killed-client-probe")) === 1 ? true : undefined;
    }, 30_000);
  } finally {
    child.kill("SIGKILL");
  }
  assert.is(await exited, "SIGKILL");
  await waitFor("the killed client's statement to be cancelled", async () => ((await active("killed-client-probe")) === 0 ? true : undefined));
  await writeAsAnother("client", 40); // waits until the router rolled the transaction back
  assert.is(await rowValue("client"), 40, "the client's update was rolled back");
  await waitFor("nothing of the router's left open", async () => {
    const left = await admin`select 1 from pg_stat_activity where application_name = 'shardrouter' and state like 'idle in transaction%'`;
    const open = (await scrape(t.router.url)).value("shardrouter_interactive_transactions_open");
    return left.length === 0 && open === 0 ? true : undefined;
  });
  assert.is(t.router.planner.shards.shards[0].nodes[0].admission.inUse, 0, "its slot came back");
  assert.is((await scrape(t.router.url)).value("shardrouter_interactive_transactions_ended_total", { reason: "idle_timeout" }), before + 1);
});

test("a router SIGKILLed with a transaction open: Postgres rolls it back when the connection drops", async () => {
  const proc = await startRouterProcess(t.cluster);
  try {
    const { transactionToken } = await proc.client.beginTransaction({ key, idleTimeoutMs: 60_000 });
    const [[pid]] = plainRows((await proc.client.executeInTransaction({ transactionToken, sql: "select pg_backend_pid()" })).result!);
    await proc.client.executeInTransaction({ transactionToken, sql: "update items set n = n + 100 where id = 'router'" });
    const held = await admin.begin(async (tx) => {
      await tx`set local lock_timeout = '100ms'`;
      await tx`update items set n = 0 where id = 'router'`;
    }).then(() => "not locked", (e: { code?: string }) => e.code);
    assert.is(held, "55P03", "the open transaction holds the row");
    assert.is(await proc.kill("SIGKILL"), "SIGKILL");
    await waitFor("the dead router's backend to be gone", async () => ((await admin`select 1 from pg_stat_activity where pid = ${Number(pid)}`).length === 0 ? true : undefined));
    assert.is(await rowValue("router"), 1, "rolled back: the row is unchanged");
    await writeAsAnother("router", 7);
    assert.is(await rowValue("router"), 7, "the lock is free");
  } finally {
    await proc.kill("SIGKILL");
  }
});

test.run();
