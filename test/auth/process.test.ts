// Auth as the command runs it (server/main.ts --config FILE): a config without an auth section is
// refused unless --insecure says so on purpose; SIGHUP re-reads the file's auth section, so a revoked
// key stops working without a restart, and a broken section leaves the one in force.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import { RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import { devConfig } from "../../server/dev-cluster/dev-config.js";
import { pickFreePorts } from "../../server/dev-cluster/ports.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { type RouterProcess, startRouterProcess } from "../harness/router-process.js";
import { test } from "../harness/uvu.js";
import { apiKey, assertCode, clientFor } from "./fixtures.js";

const root = new URL("../..", import.meta.url).pathname;
let t: TestRouter;
let router: RouterProcess | undefined;
const kept = apiKey("kept");
const revoked = apiKey("revoked");

test.before(async () => { t = await startTestRouter({ shards: 1 }); });
test.after(async () => {
  await router?.kill("SIGKILL");
  await t?.stop();
});

function run(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ["--import", "tsx", "server/main.ts", ...args], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p.stdout!.on("data", (d) => (out += d));
    p.stderr!.on("data", (d) => (out += d));
    p.once("exit", (code) => resolve({ code, out }));
  });
}

test("a config without auth is refused at start, with what to do; --insecure next to an auth section too", async () => {
  const dir = mkdtempSync(join(tmpdir(), "shardrouter-noauth-"));
  try {
    const [port] = await pickFreePorts(1);
    const file = join(dir, "router.json");
    writeFileSync(file, JSON.stringify(devConfig(t.cluster, { port })), { mode: 0o600 });
    const refused = await run(["--config", file]);
    assert.is(refused.code, 1);
    assert.match(refused.out, 'has no "auth" section');
    assert.match(refused.out, "--insecure");
    const both = join(dir, "both.json");
    writeFileSync(both, JSON.stringify({ ...(devConfig(t.cluster, { port }) as object), auth: { identities: [{ name: "x", apiKeys: [{ id: "x", sha256: kept.sha256 }], login: "router", rpcs: ["*"] }] } }), { mode: 0o600 });
    const confused = await run(["--config", both, "--insecure"]);
    assert.is(confused.code, 1);
    assert.match(confused.out, "remove one or the other");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("SIGHUP: a revoked key stops working without a restart; a broken auth section leaves the one in force", async () => {
  const config = (keys: { sha256: string }[]) => ({
    ...(devConfig(t.cluster) as object),
    auth: { identities: [{ name: "app", apiKeys: keys.map((k, i) => ({ id: `k${i}`, sha256: k.sha256 })), login: "router", rpcs: ["RouterService/*"] }] },
  });
  router = await startRouterProcess(t.cluster, { config: config([kept, revoked]) });
  const call = (token: string) => clientFor(RouterService, router!.url, "grpc", { token }).executeOnShard({ key: "k", sql: "select 1" });
  await call(kept.key);
  await call(revoked.key);

  writeFileSync(router.configFile, JSON.stringify({ ...config([kept]), listen: { host: "127.0.0.1", port: Number(new URL(router.url).port) } }));
  router.process.kill("SIGHUP");
  await waitFor("the revoked key to be refused", () => call(revoked.key).then(() => undefined, (e) => (e.code === Code.Unauthenticated ? true : undefined)));
  await call(kept.key);
  assert.match(router.output(), "auth reloaded");

  writeFileSync(router.configFile, JSON.stringify({ ...config([kept]), auth: { identities: "not a list" } }));
  router.process.kill("SIGHUP");
  await waitFor("the bad reload to be logged", () => (router!.output().includes("auth not reloaded") ? true : undefined));
  await call(kept.key);
  await assertCode(call(revoked.key), Code.Unauthenticated, "still revoked");
  // A file that is not JSON at all: the parser's message would quote it, password included.
  const secret = "s3cr3t-Pa55-unquoted";
  writeFileSync(router.configFile, `{ "auth": { "identities": [ { "login": { "user": "x", "password": ${secret} } } ] } }`);
  const lines = router.output().split("\n").length;
  router.process.kill("SIGHUP");
  await waitFor("the unreadable file to be logged", () => (router!.output().split("\n").slice(lines - 1).join("\n").includes("is not valid JSON") ? true : undefined));
  assert.not.match(router.output(), "s3cr3t"); // not even the part a parser message would quote
  await call(kept.key);
  assert.not.match(router.output(), kept.key);
  assert.not.match(router.output(), revoked.key);
});

test.run();
