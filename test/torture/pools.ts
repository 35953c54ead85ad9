// Whether the router gave back every pool slot: once the load is over and recovery is done, the
// gauges of its /metrics must read 0 for every node (statements admitted, isolated connections,
// queued waiters). A slot that never comes back is the hang the bank test once found in CI: every
// later transaction on that node waits forever.
import type postgres from "postgres";
import type { LocalCluster } from "../../server/dev-cluster/local-cluster.js";
import { scrape } from "../observability/scrape.js";
import { within } from "./bounded.js";

const gauges = ["shardrouter_pool_in_use", "shardrouter_isolated_in_use", "shardrouter_pool_waiting", "shardrouter_isolated_waiting"] as const;

/** true when every gauge of every shard node reads 0; otherwise what does not (a missing sample counts). */
export async function poolsIdle(routerUrl: string, cluster: LocalCluster): Promise<true | string> {
  const m = await within(`GET ${routerUrl}/metrics`, 10_000, scrape(routerUrl));
  if (m.status !== 200) return `GET /metrics answered ${m.status}`;
  const busy: string[] = [];
  for (const shard of cluster.shards) {
    for (const node of shard.nodes) {
      const labels = { shard: shard.name, node: node.name };
      for (const g of gauges) {
        if (!m.has(g, labels)) busy.push(`${g}{node="${node.name}"} missing`);
        else if (m.value(g, labels) !== 0) busy.push(`${g}{node="${node.name}"} = ${m.value(g, labels)}`);
      }
    }
  }
  return busy.length === 0 ? true : busy.join(", ");
}

/** Transfers the router incarnation behind `routerUrl` handled (any outcome), to say whether its pools saw load. */
export async function transfersServed(routerUrl: string): Promise<number> {
  const m = await within(`GET ${routerUrl}/metrics`, 10_000, scrape(routerUrl));
  return m.value("shardrouter_rpc_requests_total", { rpc: "Transfer" });
}

/**
 * What the router's sessions are doing on each node, for a failed pool check: a slot counted in use
 * with no busy session behind it is a slot the router lost track of; an "idle in transaction" one is
 * a transaction it never finished.
 */
export async function routerSessions(nodes: { name: string; sql: postgres.Sql }[]): Promise<string[]> {
  const lines: string[] = [];
  for (const { name, sql } of nodes) {
    try {
      const rows = await within(`pg_stat_activity on ${name}`, 10_000, sql`
        select application_name as app, state, coalesce(wait_event, '') as wait,
               coalesce((extract(epoch from now() - xact_start) * 1000)::int8, -1) as xact_ms, left(query, 80) as query
          from pg_stat_activity where application_name like 'shardrouter%' and pid <> pg_backend_pid() order by state, xact_ms desc`);
      const idle = rows.filter((r) => r.state === "idle").length;
      const busy = rows.filter((r) => r.state !== "idle").map((r) => `${r.app} ${r.state}${r.wait ? ` (${r.wait})` : ""}${Number(r.xact_ms) >= 0 ? `, transaction open ${r.xact_ms} ms` : ""}: ${r.query}`);
      lines.push(`${name}: ${idle} idle router session(s)${busy.length ? `; busy: ${busy.join(" | ")}` : ", none busy"}`);
    } catch (err) {
      lines.push(`${name}: ${(err as Error).message}`);
    }
  }
  return lines;
}
