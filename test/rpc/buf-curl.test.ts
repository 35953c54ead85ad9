// `buf curl` without --schema against a running router: everything it knows about the API comes from
// server reflection. Run from an empty folder so no local proto or buf.yaml could help it.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as assert from "uvu/assert";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { keyspaceId } from "../../server/placement/murmur3.js";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

const root = new URL("../..", import.meta.url).pathname;
const buf = join(root, "node_modules/.bin/buf");
const emptyDir = mkdtempSync(join(tmpdir(), "shardrouter-bufcurl-"));
let t: TestRouter;

test.before(hook(async () => {
  t = await startTestRouter({ shards: 2 });
  await seedDemoAccounts(t.router.planner);
}));

test.after(hook(async () => {
  await t?.stop();
  rmSync(emptyDir, { recursive: true, force: true });
}));

interface Outcome { code: number; stdout: string; stderr: string }

// Asynchronous on purpose: the router answering it runs in this process.
function bufCurl(...args: string[]): Promise<Outcome> {
  return new Promise((resolve) => {
    execFile(buf, ["curl", "--http2-prior-knowledge", ...args], { cwd: emptyDir, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function json(...args: string[]): Promise<Record<string, any>> {
  const out = await bufCurl(...args);
  assert.is(out.code, 0, out.stderr);
  return JSON.parse(out.stdout);
}

const svc = () => `${t.router.url}/shardrouter.v1.RouterService`;

test("--list-services lists the router, health and reflection", async () => {
  const out = await bufCurl("--list-services", t.router.url);
  assert.is(out.code, 0, out.stderr);
  assert.equal(out.stdout.trim().split("\n"), [
    "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection", "shardrouter.v1.AdminService", "shardrouter.v1.RouterService",
  ]);
});

test("Route over gRPC: the key's shard and keyspace id", async () => {
  const res = await json("--protocol", "grpc", "-d", '{"key":"acct-1"}', `${svc()}/Route`);
  assert.is(res.keyspaceId, keyspaceId("acct-1"));
  assert.is(res.shard, (await t.connect.route({ key: "acct-1" })).shard);
  assert.is(res.strategy, "hash_ring");
});

test("ExecuteOnShard over Connect: a bound parameter, typed cells in JSON", async () => {
  const res = await json("-d", '{"key":"acct-1","sql":"select id, balance from accounts where id = $1","params":[{"stringValue":"acct-1"}]}', `${svc()}/ExecuteOnShard`);
  assert.equal(res.result.rows, [{ values: [{ stringValue: "acct-1" }, { int64Value: "1000" }] }]);
  assert.equal(res.result.columns.map((c: { name: string }) => c.name), ["id", "balance"]);
});

test("ExecuteOnAll and GetTopology, with the v1alpha reflection protocol too", async () => {
  const all = await json("--protocol", "grpc", "--reflect-protocol", "grpc-v1alpha", "-d",
    '{"sql":"select count(*) as n from accounts","merge":{"aggregates":[{"column":"n","function":"AGGREGATE_FUNCTION_COUNT"}]}}', `${svc()}/ExecuteOnAll`);
  assert.equal(all.result.rows, [{ values: [{ int64Value: "1000" }] }]);
  const topology = await json("--protocol", "grpc", `${svc()}/GetTopology`);
  assert.equal(topology.shards.map((s: { name: string; status: string }) => s.status), ["up", "up"]);
});

test("Execute as the README and npm start's banner show it: a pinned read, count and sum, the top 5, a write on two shards", async () => {
  const pinned = await json("-d", '{"sql":"select id, balance from accounts where id = $1","params":[{"stringValue":"acct-1"}]}', `${svc()}/Execute`);
  assert.equal(pinned.result.rows, [{ values: [{ stringValue: "acct-1" }, { int64Value: "1000" }] }]);
  assert.equal(pinned.shards, [(await t.connect.route({ key: "acct-1" })).shard]);
  assert.match(pinned.routing, 'accounts.id = "acct-1"');
  const counted = await json("-d", '{"sql":"select count(*) as n, sum(balance) as total from accounts"}', `${svc()}/Execute`);
  assert.equal(counted.result.rows, [{ values: [{ int64Value: "1000" }, { numericValue: "1000000" }] }]);
  assert.equal(counted.shards, ["shard-0", "shard-1"]);
  const top = await json("-d", '{"sql":"select id, balance from accounts order by balance desc, id limit 5"}', `${svc()}/Execute`);
  assert.equal(top.result.rows.map((r: { values: { stringValue: string }[] }) => r.values[0].stringValue), ["acct-0", "acct-1", "acct-10", "acct-100", "acct-101"]);
  const write = await json("-d", '{"sql":"update accounts set balance = balance + 1 where id in ($1, $2)","params":[{"stringValue":"acct-1"},{"stringValue":"acct-3"}],"requestId":"demo-bonus-1"}', `${svc()}/Execute`);
  assert.equal([write.result.rowsAffected, write.twoPhase, write.shards], ["2", true, ["shard-0", "shard-1"]]);
  const again = await json("-d", '{"sql":"update accounts set balance = balance + 1 where id in ($1, $2)","params":[{"stringValue":"acct-1"},{"stringValue":"acct-3"}],"requestId":"demo-bonus-1"}', `${svc()}/Execute`);
  assert.equal([again.replayed, again.transactionId], [true, write.transactionId], "the same requestId: the stored answer, nothing added");
  const explained = await json("-d", '{"sql":"select id, balance from accounts order by balance desc, id limit 5"}', `${svc()}/Explain`);
  assert.equal(explained.shards, ["shard-0", "shard-1"]);
  const manual = await json("-d", '{"sql":"select id, balance from accounts order by balance desc, id limit 5","merge":{"orderBy":[{"column":"balance","descending":true},{"column":"id"}],"limit":"5"}}', `${svc()}/ExecuteOnAll`);
  assert.equal(manual.result.rows.map((r: { values: { stringValue: string }[] }) => r.values[0].stringValue), ["acct-1", "acct-3", "acct-0", "acct-10", "acct-100"]);
});

test("Health Check answers SERVING; an unknown method is refused by buf from the reflected schema", async () => {
  assert.equal(await json("--protocol", "grpc", `${t.router.url}/grpc.health.v1.Health/Check`), { status: "SERVING" });
  const unknown = await bufCurl("--protocol", "grpc", `${svc()}/NoSuchMethod`);
  assert.is.not(unknown.code, 0);
  assert.match(unknown.stderr, "NoSuchMethod");
});

test.run();
