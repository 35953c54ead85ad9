// Cross-shard Transfer (two-phase commit) next to the same transfer as one local transaction, in one
// run on one cluster: how much does atomicity across shards cost? (`npm run bench` runs these rows too.)
//   npm run bench:transfer [-- --seconds 10 --concurrency 16]
import { parseArgs } from "node:util";
import { createClient } from "../sdk/src/node.ts";
import { startBenchCluster } from "./bench-cluster.js";
import { processCpuUs, treeCpuUs } from "./process-cpu.js";
import { Rows, markdownTable, runMetadata, writeResults } from "./rows.js";
import { measureTransfers, transferTargets } from "./transfer-rows.js";

const { values: args } = parseArgs({ options: { seconds: { type: "string" }, concurrency: { type: "string" } } });
const seconds = Number(args.seconds ?? 10);
const concurrency = Number(args.concurrency ?? 16);

const env = await startBenchCluster({ log: console.log });
try {
  const postmasters = env.postmasterPids();
  const rows = new Rows({ seconds, warmupSeconds: 1, postgresCpu: () => treeCpuUs(postmasters), log: console.log });
  const client = createClient({ baseUrl: env.router.url, protocol: "grpc" });
  await measureTransfers(rows, env, client, () => processCpuUs(env.router.pid), concurrency);
  client.close();

  const meta = runMetadata({ seconds, concurrency });
  const table = markdownTable(rows.rows) + "\n\n## Targets (issue 12)\n\n" +
    transferTargets(rows.rows).map((c) => `- ${c.met === undefined ? "n/a" : c.met ? "met" : "**missed**"}: ${c.target} — measured ${c.measured}`).join("\n");
  const files = writeResults("transfer", { meta, rows: rows.rows }, `# Transfer benchmark ${meta.date}\n\n${seconds} s per row, ${concurrency} in flight, ` +
    `Node ${meta.node}, ${meta.cpus} cores (client, router and Postgres share them); router calls through the SDK over gRPC (h2c).\n\n${table}\n`);
  console.log(`\n${table}\n\n${files.join("\n")}`);
} finally {
  await env.stop();
}
