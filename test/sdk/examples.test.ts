// The SDK examples as a user runs them (the commands of package.json's example:* scripts) against a
// router on real shards: the Node backend answers HTTP from the accounts table, the Deno script prints.
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import * as assert from "uvu/assert";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { pickFreePorts } from "../../server/dev-cluster/ports.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";
import { root, runDeno } from "./deno-process.js";

const scripts = JSON.parse(readFileSync(`${root}/package.json`, "utf8")).scripts as Record<string, string>;
let t: TestRouter;
let backend: ChildProcess | undefined;

test.before(hook(async () => {
  t = await startTestRouter({ shards: 2 });
  await seedDemoAccounts(t.router.planner);
}));

test.after(hook(async () => {
  backend?.kill("SIGKILL");
  await t?.stop();
}));

test("example:node — the backend serves accounts through the SDK, transfers, and stops on SIGINT", async () => {
  const [node, ...args] = scripts["example:node"].split(" ");
  assert.is(node, "node");
  const [port] = await pickFreePorts(1);
  let output = "";
  backend = spawn(process.execPath, args, { cwd: root, env: { ...process.env, PORT: String(port), SHARDROUTER_URL: t.router.url }, stdio: ["ignore", "pipe", "pipe"] });
  backend.stdout!.on("data", (d) => (output += d));
  backend.stderr!.on("data", (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => backend!.once("exit", resolve));
  await waitFor("the backend to listen", () => (output.includes("accounts API on") ? true : undefined), 30_000);

  const api = `http://127.0.0.1:${port}`;
  const found = await fetch(`${api}/accounts/acct-42`);
  assert.is(found.status, 200);
  assert.equal(await found.json(), { id: "acct-42", balance: "1000", shard: (await t.connect.route({ key: "acct-42" })).shard });
  assert.is((await fetch(`${api}/accounts/nobody`)).status, 404);

  const moved = await fetch(`${api}/transfers?from=acct-42&to=acct-43&amount=5`, { method: "POST", headers: { "idempotency-key": "example-1" } });
  assert.is(moved.status, 200);
  const body = await moved.json();
  assert.equal([body.outcome, body.fromBalance, body.toBalance], ["committed", "995", "1005"]);
  const overdraft = await fetch(`${api}/transfers?from=acct-42&to=acct-43&amount=5000`, { method: "POST" });
  assert.is(overdraft.status, 409);

  backend.kill("SIGINT");
  assert.is(await exited, 0, output);
});

test("example:deno — the Deno script prints where an account lives and the richest accounts", async () => {
  const [deno, ...args] = scripts["example:deno"].split(" ");
  assert.is(deno, "deno");
  const run = await runDeno([...args, "acct-7"], { SHARDROUTER_URL: t.router.url });
  assert.is(run.code, 0, run.output);
  const shard = (await t.connect.route({ key: "acct-7" })).shard;
  assert.match(run.output, new RegExp(`acct-7 lives on ${shard} \\(keyspace id \\d+\\); balance 1000`));
  const top = await t.connect.executeOnAll({
    sql: "select id, balance from accounts order by balance desc, id limit 5",
    merge: { orderBy: [{ column: "balance", descending: true }, { column: "id" }], limit: 5n },
  });
  const expected = top.result!.rows.map((r) => `${r.values[0].kind.value}=${r.values[1].kind.value}`).join(", ");
  assert.ok(run.output.includes(`richest accounts: ${expected}\n`), `${run.output}\nexpected: ${expected}`);
});

test.run();
