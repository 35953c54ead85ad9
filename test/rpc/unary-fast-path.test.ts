// The unary fast path (server/rpc/unary-handler.ts) against connect-node: binary unary calls take the
// fast path, JSON and compressed calls go to connect-node, and both must answer alike. Raw HTTP/2
// frames probe what an SDK never sends (broken envelopes, unknown fields, oversized bodies).
import * as http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import { compressionGzip, createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as assert from "uvu/assert";
import { PostgresErrorDetailSchema } from "../../gen/shardrouter/v1/errors_pb.js";
import { RouteRequestSchema, RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import { hook, test } from "../harness/uvu.js";
import { failure } from "../harness/failure.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";

let t: TestRouter;
type Rpc = ReturnType<typeof createClient<typeof RouterService>>;
let clients: Record<string, Rpc>;
const int = (value: bigint): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "int64Value", value } });

test.before(hook(async () => {
  t = await startTestRouter({ shards: 2 });
  const baseUrl = t.router.url;
  clients = {
    "gRPC binary (fast path)": t.grpc,
    "Connect binary (fast path)": t.connect,
    "Connect JSON (connect-node)": createClient(RouterService, createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false })),
    "gRPC gzip (connect-node)": createClient(RouterService, createGrpcTransport({ baseUrl, sendCompression: compressionGzip, compressMinBytes: 0 })),
  };
}));

test.after(hook(async () => {
  await t?.stop();
}));

test("binary calls (fast path) and JSON or compressed calls (connect-node) get the same answers", async () => {
  const answers = await Promise.all(Object.values(clients).map(async (c) => {
    const route = await c.route({ key: "acct-7" });
    const res = await c.executeOnShard({ key: "acct-7", sql: "select $1::int8 * 2 as doubled, 'ü' as s", params: [int(21n)] });
    return { shard: route.shard, keyspaceId: route.keyspaceId, executedOn: res.shard, columns: res.result?.columns.map((col) => col.name), rows: res.result?.rows };
  }));
  for (const a of answers.slice(1)) assert.equal(a, answers[0]);
  assert.equal(answers[0].columns, ["doubled", "s"]);
});

test("Explain answers alike on every path: its plan, and a refusal's code and message", async () => {
  const answers = await Promise.all(Object.entries(clients).map(async ([name, c]) => {
    const plan = await c.explain({ sql: "select id, avg(balance) as mean from accounts where id in ($1, 2, 3) group by id order by mean desc limit 2", params: [int(1n)] });
    const refused = await failure(c.explain({ sql: "select count(distinct balance) from accounts" }));
    return {
      name, shards: plan.shards, routing: plan.routing, merge: plan.mergeDescription, statements: plan.statements.map((s) => [s.shard, s.sql]),
      tables: plan.tables.map((t) => [t.name, t.role, t.keyColumn, t.keyValues]), refused: [refused.code, refused.rawMessage],
    };
  }));
  for (const a of answers.slice(1)) assert.equal({ ...a, name: "" }, { ...answers[0], name: "" }, a.name);
  assert.equal(answers[0].tables, [["accounts", "sharded", "id", ["1", "2", "3"]]]);
  assert.is(answers[0].refused[0], Code.InvalidArgument);
  assert.match(String(answers[0].refused[1]), "count(DISTINCT …)");
});

test("a Postgres error comes back with the same code, message and SQLSTATE detail on every path", async () => {
  const errors = await Promise.all(Object.entries(clients).map(async ([name, c]) => {
    const err = await failure(c.executeOnShard({ key: "acct-7", sql: "select 1 / 0" }));
    const detail = err.findDetails(PostgresErrorDetailSchema)[0];
    return { name, code: err.code, message: err.rawMessage, sqlstate: detail?.sqlstate, shard: detail?.shard };
  }));
  for (const e of errors) {
    assert.is(e.code, Code.InvalidArgument, e.name);
    assert.is(e.sqlstate, "22012", e.name);
    assert.is(e.message, errors[0].message, e.name);
    assert.is(e.shard, errors[0].shard, e.name);
  }
});

test("interactive transactions answer alike on every path: begin, statements, commit, rollback, and their errors", async () => {
  const answers = await Promise.all(Object.entries(clients).map(async ([name, c]) => {
    const begun = await c.beginTransaction({ key: "acct-7", idleTimeoutMs: 5000 });
    const res = await c.executeInTransaction({ transactionToken: begun.transactionToken, sql: "select $1::int8 * 2 as doubled", params: [int(21n)] });
    const failed = await failure(c.executeInTransaction({ transactionToken: begun.transactionToken, sql: "select 1 / 0" }));
    const aborted = await failure(c.commitTransaction({ transactionToken: begun.transactionToken }));
    const again = await c.rollbackTransaction({ transactionToken: begun.transactionToken });
    const committed = await c.beginTransaction({ key: "acct-7" }).then(async (b) => c.commitTransaction({ transactionToken: b.transactionToken }));
    const unknown = await failure(c.executeInTransaction({ transactionToken: `${t.router.routerId}.nothing`, sql: "select 1" }));
    const refused = await failure(c.beginTransaction({ key: "acct-7" }).then(async (b) => {
      try {
        return await c.executeInTransaction({ transactionToken: b.transactionToken, sql: "commit" });
      } finally {
        await c.rollbackTransaction({ transactionToken: b.transactionToken });
      }
    }));
    return {
      name,
      shard: begun.shard, idle: begun.idleTimeoutMs, rows: res.result?.rows, executedOn: res.shard,
      failed: [failed.code, failed.findDetails(PostgresErrorDetailSchema)[0]?.sqlstate],
      aborted: [aborted.code, aborted.rawMessage], wasOpen: again.wasOpen, outcome: committed.outcome,
      unknown: [unknown.code, unknown.rawMessage], refused: [refused.code, refused.rawMessage],
    };
  }));
  for (const a of answers.slice(1)) assert.equal({ ...a, name: "" }, { ...answers[0], name: "" }, a.name);
  assert.equal(answers[0].failed, [Code.InvalidArgument, "22012"]);
  assert.is(answers[0].aborted[0], Code.Aborted);
  assert.is(answers[0].unknown[0], Code.NotFound);
  assert.is(answers[0].refused[0], Code.InvalidArgument);
  assert.is(answers[0].wasOpen, false);
});

test("NextIds answers alike on every path: the router's worker id, increasing ids none of which repeats; the same refusal of a bad count", async () => {
  const answers = await Promise.all(Object.entries(clients).map(async ([name, c]) => {
    const r = await c.nextIds({ count: 3 });
    const tooMany = await failure(c.nextIds({ count: 10_001 }));
    const none = await failure(c.nextIds({}));
    return { name, workerId: r.workerId, ids: r.ids, errors: [tooMany.code, tooMany.rawMessage, none.code, none.rawMessage] };
  }));
  for (const a of answers) {
    assert.is(a.workerId, answers[0].workerId, a.name);
    assert.equal(a.errors, answers[0].errors, a.name);
    assert.is(a.ids.length, 3, a.name);
    assert.ok(a.ids[0] > 0n && a.ids[0] < a.ids[1] && a.ids[1] < a.ids[2], a.name);
  }
  assert.is(new Set(answers.flatMap((a) => a.ids)).size, 3 * answers.length);
  assert.equal(answers[0].errors, [Code.InvalidArgument, "count must be between 1 and 10000, got 10001", Code.InvalidArgument, "count must be between 1 and 10000, got 0"]);
});

test("gRPC deadline (grpc-timeout): DEADLINE_EXCEEDED, the statement cancelled on Postgres, the slot back", async () => {
  const err = await failure(t.grpc.executeOnShard({ key: "acct-1", sql: "select pg_sleep(30), 'grpc-deadline-probe'" }, { timeoutMs: 300 }));
  assert.is(err.code, Code.DeadlineExceeded);
  await noLongerRunning("grpc-deadline-probe");
});

test("a caller that gives up mid-call: its statement is cancelled and its pool slot returned", async () => {
  const controller = new AbortController();
  const call = failure(t.grpc.executeOnShard({ key: "acct-1", sql: "select pg_sleep(30), 'abandon-probe'" }, { signal: controller.signal }));
  await waitFor("the statement to run", async () => (await runningCount("abandon-probe")) === 1 || undefined);
  controller.abort();
  assert.is((await call).code, Code.Canceled);
  await noLongerRunning("abandon-probe");
});

test("raw gRPC: broken envelopes, extra messages, unknown fields, bad timeouts are INVALID_ARGUMENT; request ids echoed", async () => {
  const known = toBinary(RouteRequestSchema, create(RouteRequestSchema, { key: "acct-1" }));
  const ok = await rawGrpc("Route", envelope(known), { "x-request-id": "probe-123" });
  assert.is(ok.trailers["grpc-status"], "0");
  assert.is(ok.headers["x-request-id"], "probe-123");
  assert.ok(ok.body.length > 5);

  const cases: [string, Buffer, Record<string, string>][] = [
    ["no message", Buffer.alloc(0), {}],
    ["truncated envelope", envelope(known).subarray(0, 7), {}],
    ["two messages", Buffer.concat([envelope(known), envelope(known)]), {}],
    ["unknown field", envelope(Buffer.concat([Buffer.from(known), Buffer.from([0x98, 0x06, 0x01])])), {}],
    ["not protobuf", envelope(Buffer.from([0xff, 0xff, 0xff])), {}],
    ["unreadable grpc-timeout", envelope(known), { "grpc-timeout": "soon" }],
  ];
  for (const [what, body, headers] of cases) {
    const r = await rawGrpc("Route", body, headers);
    assert.is(r.trailers["grpc-status"], String(Code.InvalidArgument), what);
    assert.ok(String(r.trailers["grpc-message"] ?? "").length > 0, `${what}: a message says why`);
  }
  const unknown = await rawGrpc("Route", envelope(Buffer.concat([Buffer.from(known), Buffer.from([0x98, 0x06, 0x01])])), {});
  assert.match(decodeURIComponent(String(unknown.trailers["grpc-message"])), "field numbers 99");
});

test("raw gRPC: a body over readMaxBytes is RESOURCE_EXHAUSTED and the connection stays usable", async () => {
  const session = http2.connect(t.router.url);
  try {
    const big = envelope(Buffer.alloc(17 * 1024 * 1024, 1));
    const r = await rawGrpc("Route", big, {}, session);
    assert.is(r.trailers["grpc-status"], String(Code.ResourceExhausted));
    const known = toBinary(RouteRequestSchema, create(RouteRequestSchema, { key: "acct-1" }));
    const after = await rawGrpc("Route", envelope(known), {}, session);
    assert.is(after.trailers["grpc-status"], "0");
  } finally {
    session.close();
  }
});

function envelope(message: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

interface RawAnswer { headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: Buffer }

async function rawGrpc(method: string, body: Buffer, headers: Record<string, string>, session?: http2.ClientHttp2Session): Promise<RawAnswer> {
  const own = session ?? http2.connect(t.router.url);
  try {
    return await new Promise<RawAnswer>((resolve, reject) => {
      const stream = own.request({
        ":method": "POST", ":path": `/shardrouter.v1.RouterService/${method}`, "content-type": "application/grpc+proto", te: "trailers", ...headers,
      });
      const answer: RawAnswer = { headers: {}, trailers: {}, body: Buffer.alloc(0) };
      const chunks: Buffer[] = [];
      stream.on("response", (h) => { answer.headers = h; });
      stream.on("trailers", (h) => { answer.trailers = h; });
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        answer.body = Buffer.concat(chunks);
        // A trailers-only answer carries the status in its headers.
        if (answer.trailers["grpc-status"] === undefined) answer.trailers = answer.headers;
        resolve(answer);
      });
      stream.on("error", reject);
      stream.end(body);
    });
  } finally {
    if (!session) own.close();
  }
}

async function runningCount(marker: string): Promise<number> {
  const owner = (await t.connect.route({ key: "acct-1" })).shard;
  const direct = t.direct(t.cluster.shards.find((s) => s.name === owner)!.nodes[0]);
  const [{ n }] = await direct`select count(*)::int as n from pg_stat_activity where query like ${"%" + marker + "%"} and state = 'active' and pid <> pg_backend_pid()`;
  return n;
}

async function noLongerRunning(marker: string): Promise<void> {
  await waitFor(`${marker} to be cancelled on Postgres`, async () => (await runningCount(marker)) === 0 || undefined);
  await waitFor("every pool slot back", () => t.router.planner.shards.shards.every((s) => s.nodes.every((n) => n.admission.inUse === 0)) || undefined);
  const after = await t.grpc.executeOnShard({ key: "acct-1", sql: "select 1 as one" });
  assert.is(after.result?.rows.length, 1);
}

test.run();
