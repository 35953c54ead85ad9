// The SDK's own CPU per unary call: point selects through ExecuteOnShard at 1 and 64 in flight, over
// connect-node's gRPC transport (the SDK's "grpc" before sdk/src/node-grpc-transport.ts), the SDK's
// lean gRPC transport, Connect over fetch (the node entry's default before
// sdk/src/node-connect-transport.ts, still the main entry's), connect-node's Connect transport over
// HTTP/1.1, and the SDK's lean Connect transport (the node entry's default now); direct postgres.js
// as the yardstick. The router runs in its own process (startBenchCluster), so process.cpuUsage()
// here is the client's alone.
//   node --import tsx benchmarks/sdk-client-cpu.ts [--seconds 5] [--only old,lean,connect,connect-node,lean-connect,direct] [--in-flight 1,64]
// Profile the client: node --cpu-prof --cpu-prof-dir=/tmp/prof --import tsx benchmarks/sdk-client-cpu.ts --only lean-connect
import { parseArgs } from "node:util";
import { Http2SessionManager, createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { ShardRouterClient } from "../sdk/src/client.ts";
import { createClient as createFetchClient } from "../sdk/src/index.ts";
import { createClient } from "../sdk/src/node.ts";
import { interceptorsOf } from "../sdk/src/transports.ts";
import { startBenchCluster } from "./bench-cluster.js";
import { closedLoop } from "./closed-loop.js";

const { values: args } = parseArgs({
  options: { seconds: { type: "string" }, only: { type: "string" }, "in-flight": { type: "string" } },
  strict: true,
});
const seconds = Number(args.seconds ?? 5);
const only = new Set((args.only ?? "old,lean,connect,connect-node,lean-connect,direct").split(","));
const inFlightLevels = (args["in-flight"] ?? "1,64").split(",").map(Number);
const sql = "select id, balance from accounts where id = $1";

const env = await startBenchCluster({ log: (l) => console.error(l) });
const closers: (() => unknown)[] = [];
try {
  const baseUrl = env.router.url;
  // Exactly what sdk/src/node.ts built for protocol "grpc" before the lean transport.
  const oldGrpc = () => {
    const sessionManager = new Http2SessionManager(baseUrl);
    const transport = createGrpcTransport({ baseUrl, sessionManager, interceptors: interceptorsOf({ baseUrl }) });
    return new ShardRouterClient(transport, { close: () => sessionManager.abort() });
  };
  const clients: [string, string, () => ShardRouterClient][] = [
    ["old", "SDK gRPC, connect-node transport (before)", oldGrpc],
    ["lean", "SDK gRPC, lean node:http2 transport (after)", () => createClient({ baseUrl, protocol: "grpc" })],
    ["connect", "SDK Connect over fetch (HTTP/1.1; node entry before)", () => createFetchClient({ baseUrl })],
    ["connect-node", "SDK Connect, connect-node transport (HTTP/1.1)", () =>
      new ShardRouterClient(createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: interceptorsOf({ baseUrl }) }))],
    ["lean-connect", "SDK Connect, lean node:http transport (node entry now)", () => createClient({ baseUrl })],
  ];
  const keys = env.homeKeys;
  const rows: Record<string, string | number>[] = [];
  const run = async (name: string, n: number, op: () => Promise<unknown>) => {
    await closedLoop(n, 1000, op); // warm-up: connections, JIT
    const r = await closedLoop(n, seconds * 1000, op);
    const row = {
      name, inFlight: n, opsPerSec: Math.round(r.opsPerSec), clientCpuUsPerCall: Math.round(r.cpuUsPerOp.client),
      p50Ms: Number(r.p50Ms.toFixed(3)), errors: r.errors, ...(r.firstError ? { firstError: r.firstError } : {}),
    };
    rows.push(row);
    console.error(JSON.stringify(row));
  };
  for (const n of inFlightLevels) {
    for (const [id, name, make] of clients) {
      if (!only.has(id)) continue;
      const client = make();
      closers.push(() => client.close());
      let k = 0;
      const first = await client.onShard(keys[0]).query(sql, [keys[0]]);
      if (first.rows.length !== 1) throw new Error(`${name}: expected one row, got ${first.rows.length}`);
      await run(name, n, () => {
        const key = keys[k++ % keys.length];
        return client.onShard(key).query(sql, [key]);
      });
      client.close();
    }
    if (only.has("direct")) {
      const direct = env.pool(env.home.nodes[0], { max: n });
      let k = 0;
      await run("direct postgres.js (prepared)", n, () => direct.unsafe(sql, [keys[k++ % keys.length]], { prepare: true }));
    }
  }
  console.log("\n| client | in flight | ops/s | client CPU µs/call | p50 ms | errors |\n|---|---:|---:|---:|---:|---:|");
  for (const r of rows) console.log(`| ${r.name} | ${r.inFlight} | ${r.opsPerSec} | ${r.clientCpuUsPerCall} | ${r.p50Ms} | ${r.errors} |`);
} finally {
  for (const close of closers) close();
  await env.stop();
}
