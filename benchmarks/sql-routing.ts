// Cached routing decisions per second, in process (issue 15's target: >= 1 M/s for a cached
// statement): the analysis of a statement's text comes from the cache, and each call resolves its
// parameter and places the key on the shard map. No network, no database.
//   node --import tsx benchmarks/sql-routing.ts [seconds per case, default 2]
import type { Value } from "../gen/shardrouter/v1/value_pb.js";
import { PlacementConfigSchema } from "../server/placement/placement-config.js";
import { buildShardMap } from "../server/placement/shard-map.js";
import { loadParser } from "../server/sql/parser.js";
import { type StatementPlanner as Planner, StatementPlanner } from "../server/sql-planning/statement-plan.js";
import { TableSchemas } from "../server/sql-planning/table-schemas.js";

await loadParser();
const seconds = Number(process.argv[2] ?? 2);
const shards = ["s0", "s1", "s2", "s3"];
const map = buildShardMap(PlacementConfigSchema.parse({ strategy: "hash_ring" }), shards.map((name) => ({ name, weight: 1 })));
const tables = { sharded: { accounts: "id", orders: "account_id" }, reference: ["currencies"] };
const planner = new StatementPlanner(tables);
// As the router runs: the key columns' types known (int8), cached; keys are placed canonically.
const int8 = { name: "bigint", oid: 20 };
const schemas = new TableSchemas(async (relation) => new Map([[relation === '"orders"' ? "account_id" : "id", int8], ["balance", int8]]));
await Promise.all(['"accounts"', '"orders"'].map((r) => schemas.load(r)));
const typed = new StatementPlanner(tables, undefined, schemas);
const every = () => shards;
const int = (v: number): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "int64Value", value: BigInt(v) } }) as Value;
const params: Value[][] = Array.from({ length: 1024 }, (_, i) => [int(i * 7919)]);
// `= ANY($1)` with 4 keys per call.
const arrays: Value[][] = Array.from({ length: 1024 }, (_, i) => [{
  $typeName: "shardrouter.v1.Value", kind: { case: "arrayValue", value: { $typeName: "shardrouter.v1.ValueList", values: [0, 1, 2, 3].map((j) => int(i * 7919 + j)) } },
} as Value]);

function run(name: string, sql: string, withParams: boolean | Value[][], p: Planner = planner): void {
  let n = 0;
  let sink = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    for (let i = 0; i < 1000; i++) {
      const d = p.route(p.analyze(sql), withParams ? (withParams === true ? params : withParams)[n & 1023] : [], map, every) as { shards: string[] };
      sink += d.shards.length;
      n++;
    }
  }
  const rate = n / seconds;
  console.log(`${name.padEnd(58)} ${(rate / 1e6).toFixed(2)} M decisions/s  (${(1e9 / rate).toFixed(0)} ns each)${sink ? "" : " "}`);
}

run("point select, key from $1", "select id, balance from accounts where id = $1", true);
run("co-located join, key from $1", "select a.id, o.total from accounts a join orders o on o.account_id = a.id where a.id = $1", true);
run("every shard: ORDER BY … LIMIT", "select id, balance from accounts order by balance desc limit 10", false);
// The general path (after the cases above, so their numbers stay comparable with earlier runs).
run("key = ANY($1), 4 keys", "select id, balance from accounts where id = any($1)", arrays);
run("pinned subquery, same key", "select id from accounts where id = $1 and balance >= (select max(balance) from accounts a2 where a2.id = $1)", true);
// With the key column's type known (the router's case): the key's text made canonical for int8.
run("point select, key from $1, typed key", "select id, balance from accounts where id = $1", true, typed);
run("key = ANY($1), 4 keys, typed key", "select id, balance from accounts where id = any($1)", arrays, typed);
