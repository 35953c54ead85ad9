// The SDK's lean gRPC transport (sdk/src/node-grpc-transport.ts) against a real router on real
// shards, side by side with connect-node's gRPC transport it replaces: same answers, same errors.
// A small raw HTTP/2 server stands in where the router cannot be made to misbehave on purpose
// (a call that never answers, a trailers-only error, a connection the server drops, the headers on the wire).
import { spawn } from "node:child_process";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import * as assert from "uvu/assert";
import { create, toBinary } from "@bufbuild/protobuf";
import { type Interceptor, type Transport, createClient as createRpcClient } from "@connectrpc/connect";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { RouteResponseSchema, RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { pickFreePorts } from "../../server/dev-cluster/ports.js";
import { ShardRouterClient } from "../../sdk/src/client.ts";
import { Code, ConnectError, ShardRouterError, createClient, createNodeGrpcTransport } from "../../sdk/src/node.ts";
import { interceptorsOf } from "../../sdk/src/transports.ts";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";
import { cancelledWhileRunning, failure, shape, waitUntil } from "./transport-checks.js";
import { root } from "./deno-process.js";

let t: TestRouter;
let lean: ShardRouterClient;
let old: ShardRouterClient;
let oldManager: Http2SessionManager;
let fake: FakeServer;
let unreachableUrl: string;

/** The SDK's gRPC client as it was built before the lean transport. */
function connectNodeClient(baseUrl: string): { client: ShardRouterClient; manager: Http2SessionManager; transport: Transport } {
  const manager = new Http2SessionManager(baseUrl);
  const transport = createGrpcTransport({ baseUrl, sessionManager: manager, interceptors: interceptorsOf({ baseUrl }) });
  return { client: new ShardRouterClient(transport, { close: () => manager.abort() }), manager, transport };
}

interface FakeServer {
  url: string;
  /** Headers of every request, in order, and the session each came on. */
  requests: http2.IncomingHttpHeaders[];
  sessionOf: http2.ServerHttp2Session[];
  /** Resolves with the RST code of each stream the client reset, by request index. */
  resets: Map<number, Promise<number>>;
  sessions: Set<http2.ServerHttp2Session>;
  close(): Promise<void>;
}

/** h2c; `x-scenario` picks the answer: "ok" (a RouteResponse), "trailers-only", "hang", "drop" (answer, then drop the connection). */
async function startFakeServer(): Promise<FakeServer> {
  const server = http2.createServer();
  const requests: http2.IncomingHttpHeaders[] = [];
  const sessionOf: http2.ServerHttp2Session[] = [];
  const resets = new Map<number, Promise<number>>();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => { sessions.add(s); s.once("close", () => sessions.delete(s)); });
  const body = toBinary(RouteResponseSchema, create(RouteResponseSchema, { shard: "fake-shard", keyspaceId: 7, strategy: "fake" }));
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt32BE(body.length, 1);
  frame.set(body, 5);
  server.on("stream", (stream, headers) => {
    const index = requests.push(headers) - 1;
    const session = stream.session as http2.ServerHttp2Session;
    sessionOf[index] = session;
    resets.set(index, new Promise((resolve) => stream.once("close", () => resolve(stream.rstCode))));
    stream.on("data", () => {});
    stream.on("error", () => {});
    stream.once("end", () => {
      switch (headers["x-scenario"]) {
        case "trailers-only":
          stream.respond({ ":status": 200, "content-type": "application/grpc+proto", "grpc-status": "5", "grpc-message": "no%20such%20thing", "x-extra": "1" }, { endStream: true });
          return;
        case "hang":
          return;
        default:
          stream.respond({ ":status": 200, "content-type": "application/grpc+proto", "x-echo": String(headers["x-echo"] ?? "") }, { waitForTrailers: true });
          stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
          stream.end(frame);
          if (headers["x-scenario"] === "drop") stream.once("close", () => session.destroy());
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests, sessionOf, resets, sessions,
    close: () => {
      for (const s of sessions) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

test.before(hook(async () => {
  t = await startTestRouter({ shards: 4 });
  await seedDemoAccounts(t.router.planner);
  lean = createClient({ baseUrl: t.router.url, protocol: "grpc" });
  ({ client: old, manager: oldManager } = connectNodeClient(t.router.url));
  fake = await startFakeServer();
  const [freePort] = await pickFreePorts(1); // reserved and released: nothing listens there
  unreachableUrl = `http://127.0.0.1:${freePort}`;
}));

test.after(hook(async () => {
  lean?.close();
  oldManager?.abort();
  await fake?.close();
  await t?.stop();
}));

test("a point select answers as over connect-node's transport", async () => {
  const sql = "select id, balance from accounts where id = $1";
  const [a, b] = await Promise.all([lean.onShard("acct-3").query(sql, ["acct-3"]), old.onShard("acct-3").query(sql, ["acct-3"])]);
  assert.equal(a, b);
  assert.equal(a.rows, [{ id: "acct-3", balance: 1000n }]);
  // Many at once on the one connection.
  const many = await Promise.all(Array.from({ length: 100 }, (_, i) => lean.onShard(`acct-${i}`).query(sql, [`acct-${i}`])));
  assert.equal(many.map((r) => r.rows[0].id), Array.from({ length: 100 }, (_, i) => `acct-${i}`));
});

test("a Postgres error is the same ShardRouterError (code, message, SQLSTATE detail, metadata) as with connect-node", async () => {
  const sql = "insert into accounts (id, balance) values ($1, 0)";
  const a = await failure(lean.onShard("acct-1").query(sql, ["acct-1"]));
  const b = await failure(old.onShard("acct-1").query(sql, ["acct-1"]));
  assert.ok(a instanceof ShardRouterError);
  assert.is(a.sqlstate, "23505");
  assert.is(a.code, Code.AlreadyExists);
  assert.equal(shape(a), shape(b));
  const syntax = [await failure(lean.onShard("acct-1").query("selec 1")), await failure(old.onShard("acct-1").query("selec 1"))];
  assert.equal(shape(syntax[0]), shape(syntax[1]));
  assert.is((syntax[0] as ShardRouterError).sqlstate, "42601");
});

test("a call past its deadline fails with DeadlineExceeded, from the router and from the client's own timer", async () => {
  const a = await failure(lean.onShard("slow").query("select pg_sleep(5)", [], { timeoutMs: 300 }));
  assert.is(Code[a.code], "DeadlineExceeded", a.message);
  const hasty = createClient({ baseUrl: t.router.url, protocol: "grpc", timeoutMs: 300 });
  const b = await failure(hasty.onShard("slow").query("select pg_sleep(5)"));
  assert.is(Code[b.code], "DeadlineExceeded", b.message);
  hasty.close();
  // A server that never answers: only the client's timer ends the call, and the stream is reset with CANCEL.
  const hangTransport = createNodeGrpcTransport({ baseUrl: fake.url });
  const rpc = createRpcClient(RouterService, hangTransport);
  const index = fake.requests.length;
  const c = await failure(rpc.route({ key: "k" }, { timeoutMs: 200, headers: { "x-scenario": "hang" } }));
  assert.equal([Code[c.code], c.rawMessage], ["DeadlineExceeded", "the operation timed out"]);
  assert.is(fake.requests[index]["grpc-timeout"], "200m");
  assert.is(await fake.resets.get(index), http2.constants.NGHTTP2_CANCEL);
  hangTransport.close();
});

test("the caller's abort cancels the call (Canceled) and resets the stream with CANCEL", async () => {
  const a = await cancelledWhileRunning(lean);
  assert.is(Code[a.code], "Canceled", a.message);
  // The same error connect-node gives for an abort without a reason, and a ConnectError reason is kept.
  const pre = new AbortController();
  pre.abort();
  assert.equal(shape(await failure(lean.route("acct-1", { signal: pre.signal }))), shape(await failure(old.route("acct-1", { signal: pre.signal }))));
  const reasoned = new AbortController();
  reasoned.abort(new ConnectError("shutting down", Code.Unavailable));
  assert.equal([Code[(await failure(lean.route("acct-1", { signal: reasoned.signal }))).code]], ["Unavailable"]);

  const hangTransport = createNodeGrpcTransport({ baseUrl: fake.url });
  const rpc = createRpcClient(RouterService, hangTransport);
  const index = fake.requests.length;
  const hung = new AbortController();
  const pending = failure(rpc.route({ key: "k" }, { signal: hung.signal, headers: { "x-scenario": "hang" } }));
  await waitUntil(() => fake.requests.length > index);
  hung.abort();
  assert.is(Code[(await pending).code], "Canceled");
  assert.is(await fake.resets.get(index), http2.constants.NGHTTP2_CANCEL);
  hangTransport.close();
});

test("an unreachable router is Unavailable, with connect-node's message", async () => {
  const nowhere = createClient({ baseUrl: unreachableUrl, protocol: "grpc" });
  const { client: oldNowhere, manager } = connectNodeClient(unreachableUrl);
  const a = await failure(nowhere.route("acct-1"));
  const b = await failure(oldNowhere.route("acct-1"));
  assert.is(Code[a.code], "Unavailable");
  assert.ok(a instanceof ShardRouterError);
  assert.equal(shape(a), shape(b));
  assert.match(a.message, /ECONNREFUSED/);
  // Still unreachable on the next call: a new connection is tried, not a dead one reused.
  assert.is(Code[(await failure(nowhere.route("acct-1"))).code], "Unavailable");
  nowhere.close();
  manager.abort();
});

test("a trailers-only error answers as with connect-node (code, message, metadata)", async () => {
  const transport = createNodeGrpcTransport({ baseUrl: fake.url });
  const a = await failure(createRpcClient(RouterService, transport).route({ key: "k" }, { headers: { "x-scenario": "trailers-only" } }));
  transport.close();
  const manager = new Http2SessionManager(fake.url);
  const b = await failure(createRpcClient(RouterService, createGrpcTransport({ baseUrl: fake.url, sessionManager: manager })).route({ key: "k" }, { headers: { "x-scenario": "trailers-only" } }));
  manager.abort();
  assert.equal([Code[a.code], a.rawMessage], ["NotFound", "no such thing"]);
  assert.equal(shape(a), shape(b));
  assert.is(a.metadata.get("x-extra"), "1");
});

test("a closed connection is reopened on the next call: after close(), and after the server dropped it", async () => {
  const client = createClient({ baseUrl: t.router.url, protocol: "grpc" });
  const before = await client.route("acct-5");
  client.close();
  assert.equal(await client.route("acct-5"), before);
  client.close();

  const transport = createNodeGrpcTransport({ baseUrl: fake.url });
  const rpc = createRpcClient(RouterService, transport);
  const index = fake.requests.length;
  const first = await rpc.route({ key: "k" }, { headers: { "x-scenario": "drop" } });
  assert.is(first.shard, "fake-shard");
  await waitUntil(() => fake.sessionOf[index].destroyed);
  assert.is((await rpc.route({ key: "k" })).shard, "fake-shard");
  assert.ok(fake.sessionOf[index + 1] !== fake.sessionOf[index], "a new connection");
  transport.close();
});

test("token, headers and interceptors: on the wire, seen by interceptors, echoed by the router", async () => {
  let asked = 0;
  const seen: { auth: string | null; requestId: string | null }[] = [];
  const recorder: Interceptor = (next) => async (req) => {
    const res = await next(req);
    seen.push({ auth: req.header.get("authorization"), requestId: res.header.get("x-request-id") });
    return res;
  };
  const client = createClient({
    baseUrl: t.router.url, protocol: "grpc", token: () => `t${++asked}`, headers: { "x-request-id": "sdk-lean-1" }, interceptors: [recorder],
  });
  await client.route("acct-1");
  await client.onShard("acct-1").query("select 1");
  assert.equal(seen, [{ auth: "Bearer t1", requestId: "sdk-lean-1" }, { auth: "Bearer t2", requestId: "sdk-lean-1" }]);
  // Without interceptors (the chain is skipped): the router still echoes a per-call header.
  let echoed: string | null = null;
  await lean.rpc.route({ key: "acct-1" }, { headers: { "x-request-id": "sdk-lean-2" }, onHeader: (h) => (echoed = h.get("x-request-id")) });
  assert.is(echoed, "sdk-lean-2");
  client.close();

  // What goes on the wire.
  const wired = createClient({ baseUrl: fake.url, protocol: "grpc", token: "s3cret", headers: { "x-team": "payments" }, timeoutMs: 5000 });
  const index = fake.requests.length;
  await wired.route("k", { headers: { "x-echo": "e" } });
  const h = fake.requests[index];
  assert.equal(
    [h[":method"], h[":path"], h["content-type"], h.te, h["grpc-timeout"], h.authorization, h["x-team"], h["x-echo"]],
    ["POST", "/shardrouter.v1.RouterService/Route", "application/grpc+proto", "trailers", "5000m", "Bearer s3cret", "payments", "e"]);
  wired.close();
});

test("server streams go through connect-node's transport (the router's health Watch)", async () => {
  const transport = createNodeGrpcTransport({ baseUrl: t.router.url });
  const health = createRpcClient(Health, transport);
  const controller = new AbortController();
  for await (const res of health.watch({ service: "" }, { signal: controller.signal })) {
    assert.is(res.status, HealthCheckResponse_ServingStatus.SERVING);
    break;
  }
  controller.abort();
  transport.close();
});

test("an idle client does not keep the process alive, with or without close()", async () => {
  for (const closeIt of [true, false]) {
    const script = `
      import { createClient } from "./sdk/src/node.ts";
      const client = createClient({ baseUrl: ${JSON.stringify(t.router.url)}, protocol: "grpc" });
      const r = await client.route("acct-1");
      console.log("routed", r.shard);
      ${closeIt ? "client.close();" : ""}
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
  }
});

test.run();
