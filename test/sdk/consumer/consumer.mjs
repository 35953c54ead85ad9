// A program in a project that installed only the packed @shardrouter/sdk tarball: run by Node and by
// Deno (through that project's package.json and node_modules, no configuration of ours). It prints
// one JSON line that test/sdk/package.test.ts checks against the router.
import { createClient, numeric, ShardRouterError, sqlstateOf } from "@shardrouter/sdk";

const env = (name) => (globalThis.Deno ? globalThis.Deno.env.get(name) : globalThis.process.env[name]);
const router = createClient({ baseUrl: env("SHARDROUTER_URL"), token: env("SHARDROUTER_TOKEN"), timeoutMs: 10_000 });
const [from, to] = [env("FROM_KEY"), env("TO_KEY")];

const route = await router.route(from);
const one = await router.onShard(from).query("select id, balance, $2::numeric as exact from accounts where id = $1", [from, numeric("1.50")]);
const top = await router.all("select id, balance from accounts order by balance desc, id limit 3", [], {
  orderBy: [{ column: "balance", descending: true }, "id"], limit: 3,
});
const transfer = await router.transfer(from, to, 5n);
const inTransaction = await router.onShard(from).transaction(async (tx) => (await tx.sql`select balance from accounts where id = ${from}`).rows[0].balance);
let error;
try {
  await router.onShard(from).query("select * from no_such_table");
} catch (err) {
  error = { isShardRouterError: err instanceof ShardRouterError, code: err.code, sqlstate: sqlstateOf(err) };
}

const text = (v) => (typeof v === "bigint" ? `${v}n` : v);
console.log(JSON.stringify({
  route: { shard: route.shard, keyspaceId: route.keyspaceId },
  row: one.rows[0],
  balanceType: typeof one.rows[0].balance,
  fields: one.columns.map((c) => c.name),
  top: top.rows.map((r) => r.id),
  transfer: { outcome: transfer.outcome, fromShard: transfer.fromShard, toShard: transfer.toShard, fromBalance: transfer.fromBalance },
  inTransaction,
  error,
}, (_, v) => text(v)));
