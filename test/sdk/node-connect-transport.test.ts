// The SDK's lean Connect transport (sdk/src/node-connect-transport.ts) against a real router on real
// shards, side by side with connect-node's Connect transport (HTTP/1.1) and connect-web's over fetch
// (what the SDK used in Node before): same answers, same errors. A small raw HTTP/1.1 server stands in
// where the router cannot be made to misbehave on purpose (a call that never answers, odd error
// bodies, compression, the headers on the wire, the connections used).
import { spawn } from "node:child_process";
import * as http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { gzipSync } from "node:zlib";
import * as assert from "uvu/assert";
import { create, toBinary } from "@bufbuild/protobuf";
import { type Interceptor, type Transport, createClient as createRpcClient } from "@connectrpc/connect";
import { createConnectTransport as createNodeConnect } from "@connectrpc/connect-node";
import { createConnectTransport as createWebConnect } from "@connectrpc/connect-web";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { RouteResponseSchema, RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { pickFreePorts } from "../../server/dev-cluster/ports.js";
import { ShardRouterClient } from "../../sdk/src/client.ts";
import { Code, ConnectError, ShardRouterError, createClient, createNodeConnectTransport } from "../../sdk/src/node.ts";
import { interceptorsOf } from "../../sdk/src/transports.ts";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";
import { cancelledWhileRunning, failure, shape, waitUntil } from "./transport-checks.js";
import { root } from "./deno-process.js";

let t: TestRouter;
let lean: ShardRouterClient;
let nodeRef: ShardRouterClient;
let webRef: ShardRouterClient;
let fake: FakeServer;
let unreachableUrl: string;

/** The SDK's client over connect-node's Connect transport (HTTP/1.1), the reference for errors. */
function connectNodeClient(baseUrl: string): ShardRouterClient {
  return new ShardRouterClient(createNodeConnect({ baseUrl, httpVersion: "1.1", interceptors: interceptorsOf({ baseUrl }) }));
}

/** The SDK's Connect client as it was in Node before the lean transport (fetch). */
function fetchClient(baseUrl: string): ShardRouterClient {
  return new ShardRouterClient(createWebConnect({ baseUrl, useBinaryFormat: true, interceptors: interceptorsOf({ baseUrl }) }));
}

interface FakeServer {
  url: string;
  /** Headers of every request, in order, and the connection each came on. */
  requests: http.IncomingHttpHeaders[];
  socketOf: Socket[];
  /** Resolves when the connection of a request (by index) closed. */
  closed: Map<number, Promise<void>>;
  connections: number;
  close(): Promise<void>;
}

/**
 * HTTP/1.1; `x-scenario` picks the answer: "ok" (a RouteResponse, with a trailer), "hang", "json-error",
 * "bad-json", "no-type" (503, no content type), "wrong-type" (200 JSON), "gzip", "deflate", "drop".
 */
async function startFakeServer(): Promise<FakeServer> {
  const requests: http.IncomingHttpHeaders[] = [];
  const socketOf: Socket[] = [];
  const closed = new Map<number, Promise<void>>();
  const sockets = new Set<Socket>();
  const closedOf = new WeakMap<Socket, Promise<void>>();
  const closedPromise = (s: Socket) => {
    let p = closedOf.get(s);
    if (!p) closedOf.set(s, (p = new Promise((resolve) => (s.destroyed ? resolve() : s.once("close", () => resolve())))));
    return p;
  };
  const body = Buffer.from(toBinary(RouteResponseSchema, create(RouteResponseSchema, { shard: "fake-shard", keyspaceId: 7, strategy: "fake" })));
  const server = http.createServer((req, res) => {
    const index = requests.push(req.headers) - 1;
    socketOf[index] = req.socket;
    closed.set(index, closedPromise(req.socket));
    req.resume();
    req.once("end", () => {
      const scenario = req.headers["x-scenario"] ?? "ok";
      const send = (status: number, headers: http.OutgoingHttpHeaders, b: Buffer | string) => {
        res.writeHead(status, { "content-length": Buffer.byteLength(b), ...headers });
        res.end(b);
      };
      switch (scenario) {
        case "hang":
          return;
        case "json-error":
          send(409, { "content-type": "application/json", "x-extra": "1", "trailer-x-late": "2" },
            JSON.stringify({ code: "already_exists", message: "taken", details: [{ type: "example.v1.Thing", value: "AQI" }] }));
          return;
        case "bad-json":
          send(500, { "content-type": "application/json", "x-extra": "1" }, "this is not json");
          return;
        case "no-type":
          send(503, { "x-extra": "1" }, "service unavailable");
          return;
        case "wrong-type":
          send(200, { "content-type": "application/json" }, "{}");
          return;
        case "gzip":
          send(200, { "content-type": "application/proto", "content-encoding": "gzip" }, gzipSync(body));
          return;
        case "deflate":
          send(200, { "content-type": "application/proto", "content-encoding": "deflate" }, body);
          return;
        case "drop":
          req.socket.destroy();
          return;
        default:
          send(200, { "content-type": "application/proto", "x-echo": String(req.headers["x-echo"] ?? ""), "trailer-x-t": "1" }, body);
      }
    });
  });
  let connections = 0;
  server.on("connection", (s: Socket) => {
    connections++;
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests, socketOf, closed,
    get connections() { return connections; },
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

test.before(hook(async () => {
  t = await startTestRouter({ shards: 4 });
  await seedDemoAccounts(t.router.planner);
  lean = createClient({ baseUrl: t.router.url });
  nodeRef = connectNodeClient(t.router.url);
  webRef = fetchClient(t.router.url);
  fake = await startFakeServer();
  const [freePort] = await pickFreePorts(1); // reserved and released: nothing listens there
  unreachableUrl = `http://127.0.0.1:${freePort}`;
}));

test.after(hook(async () => {
  lean?.close();
  await fake?.close();
  await t?.stop();
}));

test("the node entry's default client is the lean transport; grpc-web and a caller's fetch stay on fetch", async () => {
  const seen: string[] = [];
  const client = createClient({ baseUrl: fake.url, interceptors: [(next) => (req) => (seen.push(req.url), next(req))] });
  assert.is((await client.rpc.route({ key: "k" })).shard, "fake-shard");
  assert.is(fake.requests.at(-1)?.["user-agent"], "connect-es/2.1.2"); // fetch would say "node"
  client.close();
  const fetched: string[] = [];
  const viaFetch = createClient({ baseUrl: fake.url, fetch: (input, init) => (fetched.push(String(input)), fetch(input, init)) });
  assert.is((await viaFetch.rpc.route({ key: "k" })).shard, "fake-shard");
  assert.equal([seen, fetched], [[`${fake.url}/shardrouter.v1.RouterService/Route`], [`${fake.url}/shardrouter.v1.RouterService/Route`]]);
});

test("a point select answers as over connect-node's and connect-web's Connect transports", async () => {
  const sql = "select id, balance from accounts where id = $1";
  const [a, b, c] = await Promise.all([lean, nodeRef, webRef].map((client) => client.onShard("acct-3").query(sql, ["acct-3"])));
  assert.equal(a, b);
  assert.equal(a, c);
  assert.equal(a.rows, [{ id: "acct-3", balance: 1000n }]);
  assert.equal(await lean.topology(), await webRef.topology());
  // Many at once (more connections), then again (the same ones, kept alive).
  for (let round = 0; round < 2; round++) {
    const many = await Promise.all(Array.from({ length: 100 }, (_, i) => lean.onShard(`acct-${i}`).query(sql, [`acct-${i}`])));
    assert.equal(many.map((r) => r.rows[0].id), Array.from({ length: 100 }, (_, i) => `acct-${i}`));
  }
  // A big answer (many socket reads) is the same too.
  const bigSql = "select g as n, repeat(md5(g::text), 20) as s from generate_series(1, 2000) g";
  const [bigLean, bigRef] = await Promise.all([lean, nodeRef].map((client) => client.onShard("acct-3").query(bigSql)));
  assert.is(bigLean.rows.length, 2000);
  assert.equal(bigLean, bigRef);
  // bytea comes back as a plain Uint8Array, not a Buffer view into Node's read buffer.
  const { rows } = await lean.onShard("acct-3").query<{ b: Uint8Array }>("select '\\x0102'::bytea as b");
  assert.equal(rows[0].b, new Uint8Array([1, 2]));
  assert.is(Object.getPrototypeOf(rows[0].b), Uint8Array.prototype);
});

test("a Postgres error is the same ShardRouterError (code, message, SQLSTATE detail, metadata) as with connect-node and fetch", async () => {
  for (const [sql, sqlstate, code] of [
    ["insert into accounts (id, balance) values ($1, 0)", "23505", Code.AlreadyExists],
    ["selec 1", "42601", Code.InvalidArgument],
  ] as const) {
    const [a, b, c] = await Promise.all([lean, nodeRef, webRef].map((client) => failure(client.onShard("acct-1").query(sql, sql.includes("$1") ? ["acct-1"] : []))));
    assert.ok(a instanceof ShardRouterError);
    assert.is(a.sqlstate, sqlstate);
    assert.is(a.code, code);
    assert.equal(shape(a, true), shape(b, true));
    assert.equal(shape(a), shape(c));
  }
});

test("odd responses fail as with connect-node: bad or missing JSON error body, wrong content type, unknown encoding", async () => {
  const leanRpc = createRpcClient(RouterService, createNodeConnectTransport({ baseUrl: fake.url }));
  const refRpc = createRpcClient(RouterService, createNodeConnect({ baseUrl: fake.url, httpVersion: "1.1" }));
  const expected: Record<string, [string, string]> = {
    "json-error": ["AlreadyExists", "taken"],
    "bad-json": ["Unknown", "HTTP 500"],
    "no-type": ["Unavailable", "HTTP 503"],
    "wrong-type": ["Internal", "unsupported content type application/json"],
    deflate: ["Internal", 'unsupported response encoding "deflate"'],
  };
  for (const [scenario, [code, message]] of Object.entries(expected)) {
    const headers = { "x-scenario": scenario };
    const a = await failure(leanRpc.route({ key: "k" }, { headers }));
    const b = await failure(refRpc.route({ key: "k" }, { headers }));
    assert.equal([Code[a.code], a.rawMessage], [code, message], scenario);
    assert.equal(shape(a, true), shape(b, true), scenario);
  }
  const detailed = await failure(leanRpc.route({ key: "k" }, { headers: { "x-scenario": "json-error" } }));
  assert.equal(detailed.details, [{ type: "example.v1.Thing", value: new Uint8Array([1, 2]), debug: undefined }]);
  assert.equal([detailed.metadata.get("x-extra"), detailed.metadata.get("x-late")], ["1", "2"]); // "trailer-" headers are trailers
  // A compressed answer (never asked for) is still read.
  assert.is((await leanRpc.route({ key: "k" }, { headers: { "x-scenario": "gzip" } })).shard, "fake-shard");
  // Trailers arrive as "trailer-" headers.
  let trailer: string | null = null;
  await leanRpc.route({ key: "k" }, { onTrailer: (tr) => (trailer = tr.get("x-t")) });
  assert.is(trailer, "1");
  // A connection dropped before any answer: as connect-node.
  const dropped = [await failure(leanRpc.route({ key: "k" }, { headers: { "x-scenario": "drop" } })), await failure(refRpc.route({ key: "k" }, { headers: { "x-scenario": "drop" } }))];
  assert.equal(shape(dropped[0], true), shape(dropped[1], true));
  assert.is(Code[dropped[0].code], "Aborted");
});

test("a call past its deadline fails with DeadlineExceeded, from the router and from the client's own timer", async () => {
  const a = await failure(lean.onShard("slow").query("select pg_sleep(5)", [], { timeoutMs: 300 }));
  assert.is(Code[a.code], "DeadlineExceeded", a.message);
  const hasty = createClient({ baseUrl: t.router.url, timeoutMs: 300 });
  const b = await failure(hasty.onShard("slow").query("select pg_sleep(5)"));
  assert.is(Code[b.code], "DeadlineExceeded", b.message);
  assert.equal(await hasty.route("acct-1"), await lean.route("acct-1"));
  hasty.close();
  // A server that never answers: only the client's timer ends the call, and the connection is closed.
  const transport = createNodeConnectTransport({ baseUrl: fake.url });
  const index = fake.requests.length;
  const c = await failure(createRpcClient(RouterService, transport).route({ key: "k" }, { timeoutMs: 200, headers: { "x-scenario": "hang" } }));
  assert.equal([Code[c.code], c.rawMessage], ["DeadlineExceeded", "the operation timed out"]);
  assert.is(fake.requests[index]["connect-timeout-ms"], "200");
  await fake.closed.get(index);
  transport.close();
});

test("the caller's abort cancels the call (Canceled) and closes its connection", async () => {
  const a = await cancelledWhileRunning(lean);
  assert.is(Code[a.code], "Canceled", a.message);
  // The same error as connect-node and fetch give for an abort without a reason; a ConnectError reason is kept.
  const pre = new AbortController();
  pre.abort();
  const pres = await Promise.all([lean, nodeRef, webRef].map((client) => failure(client.route("acct-1", { signal: pre.signal }))));
  assert.equal(shape(pres[0]), shape(pres[1]));
  assert.equal(shape(pres[0]), shape(pres[2]));
  const reasoned = new AbortController();
  reasoned.abort(new ConnectError("shutting down", Code.Unavailable));
  assert.equal(shape(await failure(lean.route("acct-1", { signal: reasoned.signal }))), shape(await failure(nodeRef.route("acct-1", { signal: reasoned.signal }))));

  const transport = createNodeConnectTransport({ baseUrl: fake.url });
  const index = fake.requests.length;
  const hung = new AbortController();
  const pending = failure(createRpcClient(RouterService, transport).route({ key: "k" }, { signal: hung.signal, headers: { "x-scenario": "hang" } }));
  await waitUntil(() => fake.requests.length > index);
  hung.abort();
  assert.is(Code[(await pending).code], "Canceled");
  await fake.closed.get(index);
  transport.close();
});

test("an unreachable router is Unavailable, with connect-node's message", async () => {
  const nowhere = createClient({ baseUrl: unreachableUrl });
  const a = await failure(nowhere.route("acct-1"));
  const b = await failure(connectNodeClient(unreachableUrl).route("acct-1"));
  assert.is(Code[a.code], "Unavailable");
  assert.ok(a instanceof ShardRouterError);
  assert.equal(shape(a), shape(b));
  assert.match(a.message, /ECONNREFUSED/);
  assert.is(Code[(await failure(nowhere.route("acct-1"))).code], "Unavailable");
  nowhere.close();
});

test("keep-alive: sequential calls share one connection; close() fails calls in flight (Canceled), a later call reconnects", async () => {
  const client = createClient({ baseUrl: fake.url });
  const before = fake.connections;
  const from = fake.requests.length;
  for (let i = 0; i < 50; i++) assert.is((await client.rpc.route({ key: "k" })).shard, "fake-shard");
  assert.is(fake.connections - before, 1, "one connection for 50 sequential calls");
  assert.is(new Set(fake.socketOf.slice(from)).size, 1);
  // Errors with a body read to the end leave the connection usable too.
  await failure(client.rpc.route({ key: "k" }, { headers: { "x-scenario": "json-error" } }));
  await client.rpc.route({ key: "k" });
  assert.is(fake.connections - before, 1, "still one connection after an error answer");

  const index = fake.requests.length;
  const pending = failure(client.rpc.route({ key: "k" }, { headers: { "x-scenario": "hang" } }));
  await waitUntil(() => fake.requests.length > index);
  client.close();
  assert.equal([Code[(await pending).code], (await pending).rawMessage], ["Canceled", "connection aborted"]);
  await fake.closed.get(index);
  assert.is((await client.rpc.route({ key: "k" })).shard, "fake-shard");
  client.close();
});

test("token, headers and interceptors: on the wire, seen by interceptors, echoed by the router", async () => {
  let asked = 0;
  const seen: { auth: string | null; requestId: string | null }[] = [];
  const recorder: Interceptor = (next) => async (req) => {
    const res = await next(req);
    seen.push({ auth: req.header.get("authorization"), requestId: res.header.get("x-request-id") });
    return res;
  };
  const client = createClient({ baseUrl: t.router.url, token: () => `t${++asked}`, headers: { "x-request-id": "sdk-lean-1" }, interceptors: [recorder] });
  await client.route("acct-1");
  await client.onShard("acct-1").query("select 1");
  assert.equal(seen, [{ auth: "Bearer t1", requestId: "sdk-lean-1" }, { auth: "Bearer t2", requestId: "sdk-lean-1" }]);
  // Without interceptors (the chain is skipped): the router still echoes a per-call header.
  let echoed: string | null = null;
  await lean.rpc.route({ key: "acct-1" }, { headers: { "x-request-id": "sdk-lean-2" }, onHeader: (h) => (echoed = h.get("x-request-id")) });
  assert.is(echoed, "sdk-lean-2");
  client.close();

  // What goes on the wire.
  const wired = createClient({ baseUrl: fake.url, token: "s3cret", headers: { "x-team": "payments" }, timeoutMs: 5000 });
  const index = fake.requests.length;
  await wired.route("k", { headers: { "x-echo": "e" } });
  const h = fake.requests[index];
  assert.equal(
    [h["content-type"], h["connect-protocol-version"], h["connect-timeout-ms"], h.authorization, h["x-team"], h["x-echo"], h.connection, h["accept-encoding"]],
    ["application/proto", "1", "5000", "Bearer s3cret", "payments", "e", "keep-alive", undefined]);
  wired.close();
});

test("server streams go through connect-node's Connect transport (the router's health Watch)", async () => {
  const transport: Transport = createNodeConnectTransport({ baseUrl: t.router.url });
  const health = createRpcClient(Health, transport);
  const controller = new AbortController();
  for await (const res of health.watch({ service: "" }, { signal: controller.signal })) {
    assert.is(res.status, HealthCheckResponse_ServingStatus.SERVING);
    break;
  }
  controller.abort();
  (transport as ReturnType<typeof createNodeConnectTransport>).close();
});

test("an idle client does not keep the process alive, with or without close()", async () => {
  for (const closeIt of [true, false]) {
    const script = `
      import { createClient } from "./sdk/src/node.ts";
      const client = createClient({ baseUrl: ${JSON.stringify(t.router.url)} });
      const r = await Promise.all([client.route("acct-1"), client.route("acct-2"), client.route("acct-3")]);
      console.log("routed", r[0].shard);
      ${closeIt ? "client.close();" : ""}
      // What still holds the event loop (an idle keep-alive socket must not: it would hold it until the server's keep-alive timeout).
      setImmediate(() => console.log("holding", JSON.stringify(process.getActiveResourcesInfo().filter((r) => r !== "Immediate" && r !== "PipeWrap" /* stdout, stderr */))));
    `;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const guard = setTimeout(() => child.kill("SIGKILL"), 20_000); // a failure guard, not synchronisation
    const code = await exited;
    clearTimeout(guard);
    assert.is(code, 0, `close() ${closeIt}: the process did not exit on its own:\n${out}`);
    assert.match(out, /routed shard-/);
    assert.match(out, /holding \[\]/);
  }
});

test.run();
