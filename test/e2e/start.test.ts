// `npm start` as a user runs it: the real command in its own process, a local cluster in a data
// folder, the demo accounts, a router answering; Ctrl-C (SIGINT) stops everything, no postgres left
// behind, and a second start reuses the data.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as assert from "uvu/assert";
import { RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import { processesInDir } from "../../server/dev-cluster/leftover-server.js";
import { pickFreePorts } from "../../server/dev-cluster/ports.js";
import { waitFor } from "../harness/router-cluster.js";
import { test } from "../harness/uvu.js";
import { assertCode } from "../auth/fixtures.js";
import { plainRows } from "./values.js";

const root = new URL("../..", import.meta.url).pathname;
const dataDir = mkdtempSync(join(tmpdir(), "shardrouter-start-"));
let child: ChildProcess | undefined;
let output = "";

function start(port: number): ChildProcess {
  output = "";
  const p = spawn(process.execPath, ["--import", "tsx", "server/main.ts", "--dev", "--shards", "2", "--data-dir", dataDir, "--port", String(port)], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  p.stdout!.on("data", (d) => (output += d));
  p.stderr!.on("data", (d) => (output += d));
  return p;
}

/** Live postgres processes of any node of the cluster under dataDir. */
async function postgresUnder(dir: string): Promise<number[]> {
  const nodeDirs = readdirSync(dir).map((n) => join(dir, n, "data")).filter((d) => existsSync(d));
  return (await Promise.all(nodeDirs.map((d) => processesInDir(d)))).flat();
}

function exited(p: ChildProcess): Promise<number | null> {
  return p.exitCode !== null ? Promise.resolve(p.exitCode) : new Promise((resolve) => p.once("exit", (code) => resolve(code)));
}

test.after(async () => {
  if (child && child.exitCode === null) { child.kill("SIGKILL"); await exited(child); }
  rmSync(dataDir, { recursive: true, force: true });
});

test("the dev command serves the demo accounts, stops cleanly on SIGINT, and restarts on the same data", async () => {
  const [port] = await pickFreePorts(1);
  child = start(port);
  await waitFor("the router to say it is serving", () => (output.includes("is serving on") ? true : undefined), 90_000);
  assert.match(output, "seeded accounts");
  assert.match(output, "buf curl");
  // The banner gives two tokens; every call needs one, and the reader's may only read.
  const devToken = /dev +(sr_[\w-]+)/.exec(output)?.[1];
  const readerToken = /reader +(sr_[\w-]+)/.exec(output)?.[1];
  assert.ok(devToken && readerToken, "the banner prints a dev and a reader token");
  assert.match(output, `-H "authorization: Bearer ${devToken}"`);
  const clientWith = (token?: string) => createClient(RouterService, createConnectTransport({
    baseUrl: `http://127.0.0.1:${port}`, httpVersion: "1.1",
    interceptors: token ? [(next) => (req) => { req.header.set("authorization", `Bearer ${token}`); return next(req); }] : [],
  }));
  const select = { key: "acct-7", sql: "select balance from accounts where id = $1", params: [{ $typeName: "shardrouter.v1.Value" as const, kind: { case: "stringValue" as const, value: "acct-7" } }] };
  const res = await clientWith(devToken).executeOnShard(select);
  assert.equal(plainRows(res.result), [[1000n]]);
  await assertCode(clientWith(undefined).executeOnShard(select), Code.Unauthenticated);
  assert.equal(plainRows((await clientWith(readerToken).executeOnShard(select)).result), [[1000n]]);
  await assertCode(clientWith(readerToken).executeOnShard({ ...select, sql: "update accounts set balance = 0 where id = $1" }), Code.PermissionDenied);
  await assertCode(clientWith(readerToken).transfer({ fromKey: "acct-1", toKey: "acct-2", amount: 1n, requestId: "r" }), Code.PermissionDenied);
  assert.ok((await postgresUnder(dataDir)).length > 0, "postgres runs under the data folder");

  child.kill("SIGINT");
  assert.is(await exited(child), 0);
  assert.match(output, "stopped");
  assert.equal(await postgresUnder(dataDir), [], "no postgres left behind");

  child = start(port);
  await waitFor("the second start", () => (output.includes("is serving on") ? true : undefined), 90_000);
  assert.match(output, "already seeded");
  assert.match(output, devToken, "the same token after a restart: scripts keep working");
  child.kill("SIGINT");
  assert.is(await exited(child), 0);
  assert.equal(await postgresUnder(dataDir), []);
});

test.run();
