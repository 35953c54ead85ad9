// The SDK as users get it: `npm run build:sdk`, then `npm pack ./sdk`. publint and attw (are the
// types wrong) check the package; a temporary project outside this repository installs only the
// tarball and runs a program against a real router in Node (import and require) and in Deno (through
// that project's package.json and node_modules), and type-checks a file against its .d.ts files. The
// package's bin, `shardrouter`, is executable in the tarball and answers from node_modules/.bin.
// `deno publish --dry-run` checks the JSR layout (sdk/deno.json: no slow types, a license).
import { execFileSync, spawn } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as assert from "uvu/assert";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";
import { denoBinary, root } from "./deno-process.js";

const bin = (name: string) => join(root, "node_modules", ".bin", name);
const work = mkdtempSync(join(tmpdir(), "shardrouter-sdk-pack-"));
const project = join(work, "consumer");
let tarball = "";
let t: TestRouter;
const [from, to] = ["acct-1", "acct-2"];

/** Runs a command to its end; rejects with its output when it fails. */
function run(cmd: string, args: string[], opts: { cwd: string; env?: Record<string, string> }): Promise<string> {
  return new Promise((resolve, reject) => {
    const { FORCE_COLOR: _, ...inherited } = process.env; // Deno reads any FORCE_COLOR as "use colours"
    const child = spawn(cmd, args, { cwd: opts.cwd, env: { ...inherited, NO_COLOR: "1", ...opts.env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(" ")} exited ${code}:\n${out}\n${err}`))));
  });
}

test.before(hook(async () => {
  execFileSync(process.execPath, [join(root, "tools", "build-sdk.mjs")], { cwd: root, stdio: "pipe" });
  await run("npm", ["pack", "./sdk", "--pack-destination", work, "--silent"], { cwd: root });
  tarball = join(work, readdirSync(work).find((f) => f.endsWith(".tgz"))!);
  cpSync(join(root, "test", "sdk", "consumer"), project, { recursive: true });
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  // Only the tarball; its dependencies come from the registry (from npm's cache after npm ci).
  // @types/node as a Node project has it: the ./node entry's types name node:http and Buffer.
  await run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", tarball, "@types/node@20"], { cwd: project });
  t = await startTestRouter({ shards: 2 });
  await seedDemoAccounts(t.router.planner);
}));

test.after(hook(async () => {
  await t?.stop();
  rmSync(work, { recursive: true, force: true });
}));

test("publint finds nothing to fix", async () => {
  const out = await run(bin("publint"), ["--strict", "sdk"], { cwd: root });
  assert.match(out, /All good/);
});

test("attw --pack: types resolve for node10, node16 (import and require) and bundlers", async () => {
  const out = await run(bin("attw"), [tarball, "--format", "json"], { cwd: root });
  const report = JSON.parse(out);
  assert.ok(report.analysis, "attw analysed the tarball");
  assert.equal(report.problems, {}, JSON.stringify(report.problems)); // attw keys its problems by kind
});

test("deno publish --dry-run accepts the JSR layout (explicit types, license)", async () => {
  const copy = join(work, "jsr");
  cpSync(join(root, "sdk"), copy, { recursive: true, filter: (src) => !src.includes(`${join("sdk", "dist")}`) });
  // Deno resolves the npm: imports itself (from the registry) rather than from a node_modules.
  const config = JSON.parse(readFileSync(join(copy, "deno.json"), "utf8"));
  writeFileSync(join(copy, "deno.json"), JSON.stringify({ ...config, nodeModulesDir: "none" }));
  rmSync(join(copy, "package.json"));
  // run() rejects unless it exits 0: any problem (slow types, a missing license, an unresolvable import) fails it.
  await run(denoBinary(), ["publish", "--dry-run", "--allow-dirty"], {
    cwd: copy, env: { DENO_DIR: join(root, "node_modules", ".cache", "deno"), DENO_NO_UPDATE_CHECK: "1" },
  });
});

async function consumerRun(cmd: string, args: string[]): Promise<Record<string, any>> {
  const out = await run(cmd, args, {
    cwd: project,
    env: { SHARDROUTER_URL: t.router.url, FROM_KEY: from, TO_KEY: to, DENO_DIR: join(work, "deno-cache"), DENO_NO_UPDATE_CHECK: "1" },
  });
  return JSON.parse(out.trim().split("\n").pop()!);
}

async function checkConsumer(result: Record<string, any>): Promise<void> {
  const route = await t.connect.route({ key: from });
  assert.equal(result.route, { shard: route.shard, keyspaceId: route.keyspaceId });
  assert.is(result.row.id, from);
  assert.is(result.balanceType, "bigint");
  assert.is(result.row.exact, "1.50", "numeric stays exact text");
  assert.equal(result.fields, ["id", "balance", "exact"]);
  assert.is(result.top.length, 3);
  assert.is(result.transfer.outcome, "committed");
  assert.is(result.inTransaction, result.transfer.fromBalance, "an interactive transaction reads the balance the transfer left");
  assert.is(result.transfer.fromShard, route.shard);
  assert.is(result.transfer.toShard, (await t.connect.route({ key: to })).shard);
  assert.equal(result.error, { isShardRouterError: true, code: 3 /* InvalidArgument */, sqlstate: "42P01" });
}

test("Node runs a program that imports the installed package", async () => {
  await checkConsumer(await consumerRun(process.execPath, ["consumer.mjs"]));
});

test("Node require()s the CommonJS build", async () => {
  const out = await consumerRun(process.execPath, ["consumer.cjs"]);
  assert.equal(out, { shard: (await t.connect.route({ key: "acct-1" })).shard, errorClass: "function" });
});

test("Deno runs the same program from the project's node_modules, with no configuration of ours", async () => {
  await checkConsumer(await consumerRun(denoBinary(), ["run", "--node-modules-dir=manual", "--allow-net=127.0.0.1", "--allow-env", "consumer.mjs"]));
});

test("the bin: dist/esm/cli/main.js is executable in the tarball (no CJS copy); node_modules/.bin/shardrouter answers as Route does", async () => {
  const listing = await run("tar", ["-tvzf", tarball], { cwd: work });
  assert.match(listing, /^-rwxr-xr-x .* package\/dist\/esm\/cli\/main\.js$/m);
  assert.not.match(listing, "package/dist/cjs/cli/", "the CLI is an ES module only");
  const out = await run(join(project, "node_modules", ".bin", "shardrouter"), ["route", from, "--json"], { cwd: project, env: { SHARDROUTER_URL: t.router.url } });
  const route = await t.connect.route({ key: from });
  assert.equal(JSON.parse(out), {
    key: from, shard: route.shard, keyspaceId: route.keyspaceId, strategy: route.strategy, shardMapVersion: String(route.shardMapVersion),
    nodes: route.nodes.map(({ name, address, role, status }) => ({ name, address, role, status })),
  });
});

test("the package's .d.ts files type-check a consumer (tsc, module nodenext)", async () => {
  writeFileSync(join(project, "tsconfig.json"), JSON.stringify({
    compilerOptions: { module: "nodenext", moduleResolution: "nodenext", target: "es2022", strict: true, noEmit: true, skipLibCheck: false, types: ["node"] },
    files: ["consumer-types.ts"],
  }));
  await run(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "."], { cwd: project });
});

test.run();
