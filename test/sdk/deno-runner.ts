// The Deno side of the SDK tests: runs the cases of sdk-cases.ts in Deno against the router at
// SHARDROUTER_URL and prints one JSON line per case, which sdk.test.ts turns into its own tests.
// Started by sdk.test.ts; by hand: deno run --config sdk/deno.json --node-modules-dir=manual --allow-net=127.0.0.1 --allow-env test/sdk/deno-runner.ts
import process from "node:process";
import { createClient } from "../../sdk/src/index.ts";
import { cases, pendingCases, resultPrefix } from "./sdk-cases.ts";

const baseUrl = process.env.SHARDROUTER_URL;
if (!baseUrl) throw new Error("SHARDROUTER_URL is not set");
const groups = (process.env.SDK_PENDING_GROUPS ?? "").split(",").filter(Boolean);
const selected = [...cases, ...groups.flatMap((g) => pendingCases[g] ?? [])];
const ctx = { run: "deno", baseUrl, unreachableUrl: process.env.UNREACHABLE_URL ?? "", client: createClient({ baseUrl }) };

let failed = 0;
for (const c of selected) {
  try {
    await c.fn(ctx);
    console.log(resultPrefix + JSON.stringify({ name: c.name, ok: true }));
  } catch (err) {
    failed++;
    const e = err as Error;
    console.log(resultPrefix + JSON.stringify({ name: c.name, ok: false, error: e?.stack ?? String(err) }));
  }
}
process.exitCode = failed ? 1 : 0;
