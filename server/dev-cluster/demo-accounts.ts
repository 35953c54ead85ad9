// The demo `accounts` table of the local cluster: 1,000 accounts acct-0 … acct-999 with balance 1000,
// each written to the shard the router's own placement chooses. Seeded once; data survives restarts.
import type { Planner } from "../execution/planner.js";
import { executeStatement, newBudget } from "../execution/shard-executor.js";
import { Oid } from "../execution/pg-types.js";
import type { RawParam } from "../shards/node-pool.js";
import { writerOf } from "../shards/shard-set.js";

export const demoAccountCount = 1000;
export const demoStartingBalance = 1000;

const createTable = `create table if not exists accounts (
  id text primary key,
  balance bigint not null check (balance >= 0))`;

export async function seedDemoAccounts(planner: Planner): Promise<{ created: boolean }> {
  const run = (shard: string, sql: string, params: RawParam[] = []) => executeStatement({
    shard, pool: writerOf(planner.shards.shard(shard)), sql, params,
    signal: AbortSignal.timeout(30_000), budget: newBudget(10, 1 << 20),
  });
  let existing = 0n;
  for (const shard of planner.shards.shards) {
    await run(shard.name, createTable);
    const count = await run(shard.name, "select count(*) from accounts");
    existing += count.rows[0].values[0].kind.value as bigint;
  }
  if (existing > 0n) return { created: false };

  const keysByShard = new Map<string, string[]>();
  for (let i = 0; i < demoAccountCount; i++) {
    const key = `acct-${i}`;
    const { placement } = await planner.route(key);
    keysByShard.set(placement.shard, [...(keysByShard.get(placement.shard) ?? []), key]);
  }
  for (const [shard, keys] of keysByShard) {
    await run(shard, "insert into accounts (id, balance) select unnest($1::text[]), $2::bigint", [
      { text: `{${keys.join(",")}}`, oid: 1009 },
      { text: String(demoStartingBalance), oid: Oid.int8 },
    ]);
  }
  return { created: true };
}
