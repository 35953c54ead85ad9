// Type-checked (tsc --noEmit, module nodenext) in the consumer project: the package's .d.ts files
// give typed rows and results as a user sees them.
import { createClient, type QueryResult, type RouteInfo } from "@shardrouter/sdk";
import { createClient as createNodeClient } from "@shardrouter/sdk/node";

interface Account { id: string; balance: bigint }

export async function typed(): Promise<[bigint, number, RouteInfo]> {
  const router = createClient({ baseUrl: "http://127.0.0.1:1" });
  const r: QueryResult<Account> = await router.onShard("acct-1").query<Account>("select id, balance from accounts where id = $1", ["acct-1"]);
  const balance: bigint = r.rows[0].balance;
  const node = createNodeClient({ baseUrl: "http://127.0.0.1:1", protocol: "grpc" });
  return [balance, r.rowsAffected, await node.route("acct-1")];
}
