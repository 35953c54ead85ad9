// Many accounts at once for resharding tests: acct-0 … acct-(count-1), each written straight to the
// shard the router's map in force gives it (an `accounts` table is created on every shard first).
import type { TestRouter } from "./router-cluster.js";

export async function seedAccounts(t: TestRouter, count: number, balance: number): Promise<void> {
  const byShard = new Map<string, string[]>();
  for (let i = 0; i < count; i++) {
    const key = `acct-${i}`;
    const { placement } = await t.router.planner.route(key);
    byShard.set(placement.shard, [...(byShard.get(placement.shard) ?? []), key]);
  }
  for (const s of t.cluster.shards) {
    const sql = t.direct(s.nodes[0]);
    await sql`create table if not exists accounts (id text primary key, balance bigint not null check (balance >= 0))`;
    const mine = byShard.get(s.name) ?? [];
    if (mine.length) await sql`insert into accounts select jsonb_array_elements_text(${JSON.stringify(mine)}::text::jsonb), ${balance}`;
  }
}

/** Every account on every shard, read straight from the nodes: where each id is, and the money in all. */
export async function accountsOnShards(t: TestRouter): Promise<{ owners: Map<string, string[]>; total: bigint; negative: string[] }> {
  const owners = new Map<string, string[]>();
  const negative: string[] = [];
  let total = 0n;
  for (const s of t.cluster.shards) {
    for (const r of await t.direct(s.nodes[0])<{ id: string; balance: string }[]>`select id, balance::text from accounts`) {
      owners.set(r.id, [...(owners.get(r.id) ?? []), s.name]);
      total += BigInt(r.balance);
      if (BigInt(r.balance) < 0n) negative.push(r.id);
    }
  }
  return { owners, total, negative };
}
