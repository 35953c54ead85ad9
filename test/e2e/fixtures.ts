// Test data loaded both into the shards (each row on the shard the router places its key on) and into
// one reference database holding every row, so a merged ExecuteOnAll can be compared with the truth.
import postgres from "postgres";
import type { Planner } from "../../server/execution/planner.js";
import type { TestRouter } from "../harness/router-cluster.js";

export const ordersTable = `create table if not exists orders (
  id int primary key, account text not null, region text not null, amount numeric(12,2) not null,
  qty int, note text, created timestamptz not null)`;

export interface OrderRow { id: number; account: string; region: string; amount: string; qty: number | null; note: string | null; created: string }

/** Deterministic rows with ties, NULLs, negative amounts and non-ASCII text. */
export function orderRows(count: number): OrderRow[] {
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const regions = ["eu", "us", "apac", "ünï", "😀-emoji"];
  return Array.from({ length: count }, (_, id) => ({
    id,
    account: `acct-${Math.floor(rand() * 300)}`,
    region: regions[Math.floor(rand() * regions.length)],
    amount: (Math.floor(rand() * 200000) / 100 - 500).toFixed(2),
    qty: rand() < 0.15 ? null : Math.floor(rand() * 50),
    note: rand() < 0.3 ? null : ["a", "B", "zeta", "Émile", "ab"][Math.floor(rand() * 5)],
    created: new Date(Date.UTC(2024, 0, 1) + Math.floor(rand() * 1e10)).toISOString(),
  }));
}

const insertOrders = `insert into orders (id, account, region, amount, qty, note, created)
  select * from unnest($1::int[], $2::text[], $3::text[], $4::numeric[], $5::int[], $6::text[], $7::timestamptz[])`;

function columns(rows: OrderRow[]): (string | number | null)[][] {
  return [rows.map((r) => r.id), rows.map((r) => r.account), rows.map((r) => r.region), rows.map((r) => r.amount),
    rows.map((r) => r.qty), rows.map((r) => r.note), rows.map((r) => r.created)];
}

/** Loads rows into the shards by the router's placement of `account`, and into the reference DB. */
export async function loadOrders(t: TestRouter, planner: Planner, rows: OrderRow[]): Promise<postgres.Sql> {
  const byShard = new Map<string, OrderRow[]>();
  for (const r of rows) {
    const { placement } = await planner.route(r.account);
    byShard.set(placement.shard, [...(byShard.get(placement.shard) ?? []), r]);
  }
  for (const shard of t.cluster.shards) {
    const sql = t.direct(shard.nodes[0]);
    await sql.unsafe(ordersTable);
    const mine = byShard.get(shard.name) ?? [];
    if (mine.length) await sql.unsafe(insertOrders, columns(mine) as never);
  }
  const admin = t.direct(t.cluster.catalog);
  await admin.unsafe("create database reference");
  const c = t.cluster.catalog;
  const reference = postgres({ host: c.host, port: c.port, user: c.user, password: c.password, database: "reference", max: 2, onnotice: () => {} });
  await reference.unsafe(ordersTable);
  await reference.unsafe(insertOrders, columns(rows) as never);
  return reference;
}
