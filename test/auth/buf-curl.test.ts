// buf curl against a router with auth on and reflection behind it: the bearer token goes with the
// call (-H) and, separately, with reflection (--reflect-header: buf does not send -H headers there).
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as assert from "uvu/assert";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { test } from "../harness/uvu.js";
import { apiKey } from "./fixtures.js";

const root = new URL("../..", import.meta.url).pathname;
const buf = join(root, "node_modules/.bin/buf");
const emptyDir = mkdtempSync(join(tmpdir(), "shardrouter-bufcurl-auth-"));
const key = apiKey("bufcurl");
let t: TestRouter;

test.before(async () => {
  t = await startTestRouter({
    shards: 1,
    auth: () => ({ open: { health: false, reflection: false }, identities: [{ name: "ops", apiKeys: [{ id: "k", sha256: key.sha256 }], login: "router", rpcs: ["*"] }] }),
  });
});
test.after(async () => {
  await t?.stop();
  rmSync(emptyDir, { recursive: true, force: true });
});

function bufCurl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(buf, ["curl", "--http2-prior-knowledge", ...args], { cwd: emptyDir, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const route = () => `${t.router.url}/shardrouter.v1.RouterService/Route`;
const auth = `authorization: Bearer ${key.key}`;

test("-H alone does not reach reflection: with reflection behind auth, buf cannot find the service", async () => {
  const out = await bufCurl("--protocol", "grpc", "-H", auth, "-d", '{"key":"acct-1"}', route());
  assert.is.not(out.code, 0);
  assert.match(out.stderr, "failed to find service");
});

test("--reflect-header carries the token to reflection", async () => {
  const out = await bufCurl("--protocol", "grpc", "-H", auth, "--reflect-header", auth, "-d", '{"key":"acct-1"}', route());
  assert.is(out.code, 0, out.stderr);
  assert.ok(JSON.parse(out.stdout).shard);
  const listed = await bufCurl("--reflect-header", auth, "--list-services", t.router.url);
  assert.is(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, "shardrouter.v1.RouterService");
});

test("without a token: unauthenticated, for reflection and for the call", async () => {
  const listed = await bufCurl("--list-services", t.router.url);
  assert.is.not(listed.code, 0);
  assert.match(listed.stderr, /not authenticated|unauthenticated/i); // buf words a refused reflection as "you are not authenticated"
  const out = await bufCurl("--protocol", "grpc", "--reflect-header", auth, "-d", '{"key":"acct-1"}', route());
  assert.is.not(out.code, 0);
  assert.match(out.stderr, /unauthenticated/i);
  assert.not.match(out.stderr, key.key);
});

test.run();
