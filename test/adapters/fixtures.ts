// What the Kysely and Drizzle tests share: a router on 3 real shards with the demo accounts and an
// `orders` table beside them (an order lives on its account's shard, so a join by account is local),
// the SDK client, and reads straight from a shard's primary to check where rows really landed.
import { createClient, type ShardRouterClient } from "../../sdk/src/node.ts";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";

export interface AdapterFixture {
  t: TestRouter;
  client: ShardRouterClient;
  /** Rows of `sql` read directly on the primary of the shard that owns `key`, bypassing the router. */
  onOwner(key: string, sql: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  /** Waits until no shard has a router session left idle in a transaction (no reserved connection leaked). */
  noOpenTransactions(): Promise<void>;
  stop(): Promise<void>;
}

export async function startAdapterFixture(): Promise<AdapterFixture> {
  const t = await startTestRouter({ shards: 3 });
  await seedDemoAccounts(t.router.planner);
  await t.grpc.executeOnAll({ sql: "create table orders (id text primary key, account_id text not null references accounts (id), amount bigint not null)" });
  const client = createClient({ baseUrl: t.router.url });
  const primary = (shard: string) => t.direct(t.cluster.shards.find((s) => s.name === shard)!.nodes[0]);
  return {
    t,
    client,
    async onOwner(key, sql, params = []) {
      const { shard } = await client.route(key);
      return [...await primary(shard).unsafe(sql, params as never[])];
    },
    async noOpenTransactions() {
      await waitFor("no router connection idle in a transaction", async () => {
        for (const s of t.cluster.shards) {
          const [{ n }] = await primary(s.name)`select count(*)::int as n from pg_stat_activity where state like 'idle in transaction%' and usename <> 'postgres'`;
          if (n > 0) return undefined;
        }
        return true;
      });
    },
    async stop() {
      client.close();
      await t.stop();
    },
  };
}
