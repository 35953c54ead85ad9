// The production build as it is deployed: tsc (tsconfig.build.json, what `npm run build:server` runs)
// compiles into a folder of its own, laid out like a deployment (package.json, node_modules, dist/) with
// no TypeScript sources and no tsx where the router could load them from; `node dist/server/main.js`
// then serves a real cluster (Route, ExecuteOnShard, a cross-shard Transfer, auth on), and so does
// `--dev`. Built anew each run, never from a dist/ left by an older config.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import * as assert from "uvu/assert";
import { RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import { TransactionOutcome } from "../../gen/shardrouter/v1/transactions_pb.js";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { devConfig } from "../../server/dev-cluster/dev-config.js";
import { pickFreePorts } from "../../server/dev-cluster/ports.js";
import { buildServer, compiledMain, repoRoot } from "../../tools/build-server.js";
import { apiKey, clientFor } from "../auth/fixtures.js";
import { plainRows } from "../e2e/values.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { type RouterProcess, startRouterProcess } from "../harness/router-process.js";
import { hook, test } from "../harness/uvu.js";

const app = mkdtempSync(join(tmpdir(), "shardrouter-build-"));
const dist = join(app, "dist");
const entry = compiledMain(dist);
/** What builds or runs TypeScript: none of it is in the deployment's node_modules. */
const buildTools = new Set(["tsx", "esbuild", "@esbuild", "typescript", ".bin"]);
const key = apiKey("compiled");
let t: TestRouter | undefined;
let router: RouterProcess | undefined;
let buildMs = 0;

test.before(hook(async () => {
  // tsc takes seconds of CPU; the cluster starts meanwhile. Both settle before anything can fail,
  // so the after hook always has the cluster to stop.
  const [built, started] = await Promise.allSettled([
    buildServer({ outDir: dist }).then((ms) => { buildMs = ms; }),
    startTestRouter({ shards: 2 }).then((r) => { t = r; }),
  ]);
  for (const r of [built, started]) if (r.status === "rejected") throw r.reason;
  console.log(`tsc -p tsconfig.build.json into ${dist}: ${(buildMs / 1000).toFixed(1)} s`);
  await seedDemoAccounts(t!.router.planner);
  copyFileSync(join(repoRoot, "package.json"), join(app, "package.json")); // "type": "module"
  mkdirSync(join(app, "node_modules"));
  for (const name of readdirSync(join(repoRoot, "node_modules"))) {
    if (!buildTools.has(name) && !name.startsWith(".")) symlinkSync(join(repoRoot, "node_modules", name), join(app, "node_modules", name));
  }
}));
test.after(hook(async () => {
  await router?.kill("SIGKILL");
  await t?.stop();
  rmSync(app, { recursive: true, force: true });
}));

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)]));
}

test("the build holds JavaScript and source maps for server/ and gen/, and no TypeScript", () => {
  const files = filesUnder(dist);
  assert.ok(existsSync(entry), entry);
  assert.ok(existsSync(`${entry}.map`), "source maps");
  assert.ok(existsSync(join(dist, "gen", "shardrouter", "v1", "router_pb.js")), "the generated code the server imports");
  assert.equal(files.filter((f) => f.endsWith(".ts")), [], "no .ts file in the build");
  assert.equal(readdirSync(dist).sort(), ["gen", "server"], "only server/ and gen/ (nothing from sdk/, tools/, test/)");
  assert.not.ok(existsSync(join(app, "node_modules", "tsx")), "no tsx to load");
});

test("node dist/server/main.js --config serves a real cluster: Route, ExecuteOnShard, a cross-shard Transfer", async () => {
  const [port] = await pickFreePorts(1);
  const config = {
    ...(devConfig(t!.cluster, { port }) as object),
    auth: { identities: [{ name: "app", apiKeys: [{ id: "k", sha256: key.sha256 }], login: "router", rpcs: ["RouterService/*"] }] },
  };
  router = await startRouterProcess(t!.cluster, { entry, cwd: app, config });
  const grpc = clientFor(RouterService, router.url, "grpc", { token: key.key });
  const connect = clientFor(RouterService, router.url, "connect-binary", { token: key.key });

  const route = await grpc.route({ key: "acct-1" });
  const expected = await t!.router.planner.route("acct-1");
  assert.is(route.shard, expected.placement.shard);
  assert.is(route.strategy, "hash_ring");

  const str = (value: string) => ({ $typeName: "shardrouter.v1.Value" as const, kind: { case: "stringValue" as const, value } });
  const select = await connect.executeOnShard({ key: "acct-1", sql: "select id, balance from accounts where id = $1", params: [str("acct-1")] });
  assert.equal(plainRows(select.result), [["acct-1", 1000n]]);

  let to = 2;
  while ((await t!.router.planner.route(`acct-${to}`)).placement.shard === expected.placement.shard) to++;
  const transfer = await grpc.transfer({ fromKey: "acct-1", toKey: `acct-${to}`, amount: 25n, requestId: "compiled-1" });
  assert.is(transfer.outcome, TransactionOutcome.COMMITTED);
  assert.ok(transfer.twoPhase, "the accounts are on different shards");
  assert.is(transfer.fromBalance, 975n);
  assert.is(transfer.toBalance, 1025n);
  const after = await connect.executeOnShard({ key: `acct-${to}`, sql: "select balance from accounts where id = $1", params: [str(`acct-${to}`)] });
  assert.equal(plainRows(after.result), [[1025n]]);
});

test("the compiled router runs without tsx: no loader on its command line or in NODE_OPTIONS", () => {
  const pid = router!.process.pid!;
  const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
  assert.is(argv[1], entry, argv.join(" "));
  assert.ok(argv.every((a) => !/tsx|^--(import|loader|experimental-loader|require)$|^-r$/.test(a)), argv.join(" "));
  const nodeOptions = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").find((v) => v.startsWith("NODE_OPTIONS="));
  assert.not.ok(nodeOptions?.includes("tsx"), nodeOptions);
});

test("SIGTERM stops the compiled router cleanly", async () => {
  assert.is(await router!.kill("SIGTERM"), "exit 0", router!.output());
  router = undefined;
});

test("node dist/server/main.js --dev starts a local cluster and serves it", async () => {
  const [port] = await pickFreePorts(1);
  const dataDir = mkdtempSync(join(tmpdir(), "shardrouter-build-dev-")); // app/ is 0700: postgres could not reach it
  const child = spawn(process.execPath, [entry, "--dev", "--insecure", "--shards", "1", "--replicas", "0", "--data-dir", dataDir, "--port", String(port)], {
    cwd: app, stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  try {
    const served = await waitFor("the dev router to serve", () => (out.includes("is serving on") ? true : child.exitCode !== null || child.signalCode !== null ? false : undefined), 90_000);
    assert.ok(served, `exited (${child.exitCode ?? child.signalCode}) before serving:\n${out}`);
    const route = await clientFor(RouterService, `http://127.0.0.1:${port}`, "grpc").route({ key: "acct-1" });
    assert.is(route.shard, "shard-0");
    child.kill("SIGINT");
    assert.is(await exited, 0, out);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test.run();
