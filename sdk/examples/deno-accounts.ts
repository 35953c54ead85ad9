// A Deno script over the SDK: where an account lives, its balance, and the richest five accounts.
//   npm start                 (another terminal: the router with the demo accounts)
//   SHARDROUTER_TOKEN=sr_…  npm run example:deno      (the dev key npm start prints; or: deno run --config sdk/deno.json --allow-net=127.0.0.1 --allow-env sdk/examples/deno-accounts.ts acct-42)
// node:process instead of the Deno namespace keeps this file type-checked by the repository's tsc too.
import process from "node:process";
import { Code, ConnectError, createClient } from "../src/index.ts";

const baseUrl = process.env.SHARDROUTER_URL ?? "http://127.0.0.1:8080";
const key = process.argv[2] ?? "acct-1";
const router = createClient({ baseUrl, token: process.env.SHARDROUTER_TOKEN, timeoutMs: 5000 });

try {
  const where = await router.route(key);
  const { rows } = await router.onShard(key).query<{ balance: bigint }>("select balance from accounts where id = $1", [key]);
  console.log(`${key} lives on ${where.shard} (keyspace id ${where.keyspaceId}); balance ${rows[0]?.balance ?? "none: no such account"}`);

  const top = await router.all<{ id: string; balance: bigint }>(
    "select id, balance from accounts order by balance desc, id limit 5", [],
    { orderBy: ["balance desc", "id"], limit: 5 });
  console.log("richest accounts:", top.rows.map((r) => `${r.id}=${r.balance}`).join(", "));
} catch (err) {
  if (err instanceof ConnectError && err.code === Code.Unavailable) {
    console.error(`no router at ${baseUrl}: start one with npm start (${err.rawMessage})`);
    process.exit(1);
  }
  throw err;
}
