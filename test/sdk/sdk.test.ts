// The SDK against a router on 4 real shards, the same cases (sdk-cases.ts) three ways: in Node over
// Connect and over gRPC (h2c), both from the "./node" entry (node:http, node:http2), and in Deno over
// Connect (fetch) — a real Deno process whose per-case outcomes become tests here, so they count in the suite's totals.
import * as assert from "uvu/assert";
import { createClient } from "../../sdk/src/node.ts";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { pickFreePorts } from "../../server/dev-cluster/ports.js";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";
import { denoSdkFlags, type Finished, runDeno } from "./deno-process.js";
import { type CaseContext, cases, pendingCases, resultPrefix } from "./sdk-cases.js";

// Groups of cases that once waited for the server; all run now.
//   array-nulls   NULL elements in array cells (the router reads array text itself)
const enabled: Record<string, boolean> = { "array-nulls": true };

const groups = Object.keys(pendingCases).filter((g) => enabled[g]);
const selected = [...cases, ...groups.flatMap((g) => pendingCases[g])];
let t: TestRouter;
const runs: Record<string, CaseContext> = {};

test.before(hook(async () => {
  t = await startTestRouter({ shards: 4 });
  await seedDemoAccounts(t.router.planner);
  const baseUrl = t.router.url;
  const [freePort] = await pickFreePorts(1); // reserved and released: nothing listens there
  const unreachableUrl = `http://127.0.0.1:${freePort}`;
  runs.node = { run: "node", baseUrl, unreachableUrl, client: createClient({ baseUrl }) };
  runs["node-grpc"] = { run: "node-grpc", baseUrl, unreachableUrl, client: createClient({ baseUrl, protocol: "grpc" }) };
}));

test.after(hook(async () => {
  runs.node?.client.close();
  runs["node-grpc"]?.client.close();
  await t?.stop();
}));

for (const run of ["node", "node-grpc"]) {
  for (const c of selected) test(`${run}: ${c.name}`, () => c.fn(runs[run]));
}

interface DenoCases extends Finished { outcomes: Map<string, { ok: boolean; error?: string }> }

async function runDenoCases(ctx: CaseContext): Promise<DenoCases> {
  const run = await runDeno(
    ["run", ...denoSdkFlags, "--no-prompt", "--allow-net=127.0.0.1", "--allow-env=SHARDROUTER_URL,UNREACHABLE_URL,SDK_PENDING_GROUPS", "test/sdk/deno-runner.ts"],
    { SHARDROUTER_URL: ctx.baseUrl, UNREACHABLE_URL: ctx.unreachableUrl, SDK_PENDING_GROUPS: groups.join(",") });
  const outcomes = new Map<string, { ok: boolean; error?: string }>();
  for (const line of run.output.split("\n")) {
    if (!line.startsWith(resultPrefix)) continue;
    const { name, ok, error } = JSON.parse(line.slice(resultPrefix.length));
    outcomes.set(name, { ok, error });
  }
  return { ...run, outcomes };
}

let deno: Promise<DenoCases> | undefined;
const denoRun = () => (deno ??= runDenoCases(runs.node));

for (const c of selected) {
  test(`deno: ${c.name}`, async () => {
    const run = await denoRun();
    const outcome = run.outcomes.get(c.name);
    assert.ok(outcome, `Deno reported nothing for this case; its output:\n${run.output}`);
    assert.ok(outcome.ok, `failed in Deno:\n${outcome.error}`);
  });
}

test("deno: the process reported every case, in order, and exited 0", async () => {
  const run = await denoRun();
  assert.equal([...run.outcomes.keys()], selected.map((c) => c.name));
  assert.is(run.code, 0, run.output);
});

test("deno check: the SDK, its Deno example and the shared cases type-check under Deno's TypeScript", async () => {
  // The SDK as a Deno project sees it (its deno.json); the rest needs @types/node for node:process
  // and node:assert, which Deno finds through the repository's package.json.
  const sdk = await runDeno(["check", ...denoSdkFlags, "sdk/src/index.ts"]);
  assert.is(sdk.code, 0, sdk.output);
  const rest = await runDeno(["check", "test/sdk/deno-runner.ts", "sdk/examples/deno-accounts.ts"]);
  assert.is(rest.code, 0, rest.output);
});

test("deno: the main entry never loads node-only code; the ./node entry does; neither loads the CLI", async () => {
  const graph = async (entry: string) => {
    const run = await runDeno(["info", "--json", ...denoSdkFlags, entry]);
    assert.is(run.code, 0, run.output);
    return (JSON.parse(run.output) as { modules: { specifier: string }[] }).modules.map((m) => m.specifier);
  };
  const main = await graph("sdk/src/index.ts");
  assert.ok(main.some((s) => s.includes("connect-web")), main.join("\n"));
  assert.not.ok(main.some((s) => s.includes("connect-node") || s.startsWith("node:")), main.join("\n"));
  const node = await graph("sdk/src/node.ts");
  assert.ok(node.some((s) => s.includes("connect-node")));
  assert.not.ok([...main, ...node].some((s) => s.includes("/src/cli/")), "no library entry loads the CLI");
});

// Not test.skip: test/run.ts counts uvu's skipped tests as failures' negative. Say what waits instead.
for (const [group, list] of Object.entries(pendingCases)) {
  if (!enabled[group]) console.log(`not run, waiting for the server (${group}): ${list.map((c) => c.name).join("; ")}`);
}

test.run();
