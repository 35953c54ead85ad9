// Yardsticks for the router, measured on the same machine in the same run: ExecuteOnShard served with
// nothing but postgres.js on one node (every cell answered as text; no placement, admission, breaker,
// budget, deadline or typed values), in two ways:
//   mode "connect": one connect-node handler (gRPC over h2c): the naive router of issue 6, the cost of
//                   Connect + HTTP/2 + postgres.js that the router pays as long as it serves through Connect;
//   mode "raw":     a node:http2 stream handler that reads and writes the gRPC frames itself: what a hot
//                   path that bypasses Connect for this one unary RPC could get down to.
//   REFERENCE_SERVER='{"mode":"raw","port":…,"node":{host,port,database,user,password},"max":10}' node --import tsx benchmarks/reference-server.ts
import * as http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import postgres from "postgres";
import { type ExecuteOnShardRequest, ExecuteOnShardRequestSchema, ExecuteOnShardResponseSchema, RouterService } from "../gen/shardrouter/v1/router_pb.js";
import { type ResultSet, ResultSetSchema } from "../gen/shardrouter/v1/value_pb.js";
import { grpcFrame } from "./h2load.js";

const { mode, port, node, max } = JSON.parse(process.env.REFERENCE_SERVER ?? "{}") as {
  mode: "connect" | "raw"; port: number; max: number; node: { host: string; port: number; database: string; user: string; password: string };
};
const sql = postgres({ ...node, max, fetch_types: false, onnotice: () => {} });

async function execute(req: ExecuteOnShardRequest): Promise<ResultSet> {
  const params = req.params.map((p) => (p.kind.value === undefined ? null : String(p.kind.value)));
  const result = await sql.unsafe(req.sql, params, { prepare: true });
  const columns = result.columns.map((c) => ({ name: c.name, type: String(c.type), typeOid: c.type }));
  const rows = result.map((r) => ({ values: columns.map((c) => ({ kind: { case: "stringValue" as const, value: String(r[c.name]) } })) }));
  return create(ResultSetSchema, { columns, rows, command: result.command });
}

const path = "/shardrouter.v1.RouterService/ExecuteOnShard";
const grpcHeaders = { ":status": 200, "content-type": "application/grpc" };

function rawStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
  if (headers[":path"] !== path) {
    stream.respond({ ...grpcHeaders, "grpc-status": "12" }, { endStream: true }); // UNIMPLEMENTED
    return;
  }
  const chunks: Buffer[] = [];
  stream.on("error", () => {}); // a client that goes away mid-request (h2load at the end of a run)
  stream.on("data", (c: Buffer) => chunks.push(c));
  stream.on("end", () => {
    const body = Buffer.concat(chunks);
    execute(fromBinary(ExecuteOnShardRequestSchema, body.subarray(5)))
      .then((result) => {
        if (stream.closed) return;
        const message = toBinary(ExecuteOnShardResponseSchema, create(ExecuteOnShardResponseSchema, { shard: "reference", result }));
        stream.respond(grpcHeaders, { waitForTrailers: true });
        stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        stream.end(grpcFrame(message));
      })
      .catch((err: Error) => {
        if (!stream.closed) stream.respond({ ...grpcHeaders, "grpc-status": "13", "grpc-message": encodeURIComponent(err.message) }, { endStream: true });
      });
  });
}

const server = mode === "raw"
  ? http2.createServer().on("stream", rawStream).on("sessionError", () => {})
  : http2.createServer(connectNodeAdapter({
    routes: (router: ConnectRouter) => router.service(RouterService, {
      async executeOnShard(req) {
        return { shard: "reference", result: await execute(req) };
      },
    }),
  }));
server.listen(port, "127.0.0.1", () => console.log(`reference server (${mode}) is serving on ${port}`));
process.on("SIGINT", () => {
  server.close();
  void sql.end({ timeout: 1 }).then(() => process.exit(0));
});
