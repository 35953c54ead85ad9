// Structured logs: a request id per RPC (the caller's x-request-id, or a new one), echoed in the
// response, on the JSON line of a failing RPC at the default level and on every RPC's access line at
// info; Postgres' messages (which can quote a parameter) and credentials never in a line.
import { type Client, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as assert from "uvu/assert";
import { ReadPreference, RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import { PostgresErrorDetailSchema } from "../../gen/shardrouter/v1/errors_pb.js";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { codeNames, type Logger, lineLogger, safeError, silentLogger } from "../../server/observability/logger.js";
import { type RunningRouter, startRouter } from "../../server/router.js";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";
import { failure } from "../harness/failure.js";

let t: TestRouter;
let router: RunningRouter;
let log: Logger;
let connect: Client<typeof RouterService>;
let grpc: Client<typeof RouterService>;
const lines: string[] = [];
const str = (value: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value } });
const paramSecret = "obs-param-secret-5521";

/** Every logged line (each must be one JSON object) with this request id. */
function linesFor(requestId: string): Record<string, unknown>[] {
  return lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.requestId === requestId);
}

test.before(hook(async () => {
  t = await startTestRouter({ shards: 2 });
  await seedDemoAccounts(t.router.planner);
  // A second router over the same cluster, with a logger whose lines the tests read.
  log = lineLogger((l) => lines.push(l));
  router = await startRouter({ ...t.config, listen: { ...t.config.listen, port: 0 } }, { logger: log });
  connect = createClient(RouterService, createConnectTransport({ baseUrl: router.url, httpVersion: "1.1" }));
  grpc = createClient(RouterService, createGrpcTransport({ baseUrl: router.url }));
}));
test.after(hook(async () => {
  await router?.close();
  await t?.stop();
}));

test("at the default level, a server-side failure is one JSON line with the request id; client mistakes and successes are not logged", async () => {
  log.level = "notice";
  const unavailable = await failure(connect.executeOnShard(
    { key: "acct-1", sql: "select 1", readPreference: ReadPreference.REPLICA },
    { headers: { "x-request-id": "obs-req-unavailable-1" } },
  ));
  const mistake = await failure(connect.executeOnShard(
    { key: "acct-1", sql: "select $1::int8", params: [str(paramSecret)] },
    { headers: { "x-request-id": "obs-req-mistake-1" } },
  ));
  let echoed: string | null = null;
  await connect.route({ key: "acct-1" }, { headers: { "x-request-id": "obs-req-ok-1" }, onHeader: (h) => (echoed = h.get("x-request-id")) });

  assert.is(codeNames[unavailable.code], "unavailable");
  assert.is(unavailable.metadata.get("x-request-id"), "obs-req-unavailable-1", "echoed on an error");
  assert.is(mistake.metadata.get("x-request-id"), "obs-req-mistake-1");
  assert.is(echoed, "obs-req-ok-1", "echoed on a success");

  const [line, ...more] = linesFor("obs-req-unavailable-1");
  assert.ok(line, `a line for the failing RPC among:\n${lines.join("\n")}`);
  assert.is(more.length, 0);
  assert.is(line.level, "warn");
  assert.is(line.service, "shardrouter.v1.RouterService");
  assert.is(line.rpc, "ExecuteOnShard");
  assert.is(line.code, "unavailable");
  assert.is(typeof line.ms, "number");
  const err = line.err as { code: string; message: string };
  assert.is(err.code, "unavailable");
  assert.match(err.message, "replica");
  assert.is(linesFor("obs-req-mistake-1").length, 0, "a caller's mistake is info");
  assert.is(linesFor("obs-req-ok-1").length, 0, "access lines are info");
});

test("at info: an access line per RPC carrying the id the response carried; a Postgres failure logs its SQLSTATE, never its message", async () => {
  log.level = "info";
  try {
    let generated: string | null = null;
    const routed = await grpc.route({ key: "acct-2" }, { onHeader: (h) => (generated = h.get("x-request-id")) });
    assert.ok(generated && /^[0-9a-f]{12}-[0-9a-z]+$/.test(generated), `a new request id: ${generated}`);
    const [access] = linesFor(generated!);
    assert.ok(access, "an access line with the generated id");
    assert.equal([access.level, access.rpc, access.code, access.shard], ["info", "Route", "ok", routed.shard]);

    const bad = await failure(grpc.executeOnShard(
      { key: "acct-2", sql: "select $1::int8 as n", params: [str(paramSecret)] },
      { headers: { "x-request-id": "obs-req-mistake-2" } },
    ));
    assert.is(bad.metadata.get("x-request-id"), "obs-req-mistake-2", "in gRPC error metadata too");
    assert.match(bad.rawMessage, paramSecret, "the caller itself is told Postgres' message");
    const [line] = linesFor("obs-req-mistake-2");
    assert.ok(line, "a line for the failing RPC");
    const err = line.err as Record<string, unknown>;
    assert.equal([line.code, err.sqlstate, err.shard, line.shard], ["invalid_argument", "22P02", routed.shard, routed.shard]);
    assert.is(err.message, undefined, "Postgres' message can quote a parameter: not logged");

    // An id that is not a short token is replaced, not copied into the logs.
    let replaced: string | null = null;
    await connect.route({ key: "acct-2" }, { headers: { "x-request-id": "bad id\twith spaces" }, onHeader: (h) => (replaced = h.get("x-request-id")) });
    assert.ok(replaced && /^[0-9a-f]{12}-[0-9a-z]+$/.test(replaced) && replaced !== generated, `replaced by a new id: ${replaced}`);
    assert.is(linesFor(replaced!).length, 1);
  } finally {
    log.level = "notice";
  }
});

test("no line holds a password, a DSN or a statement parameter", () => {
  assert.ok(lines.length >= 3, "the tests above logged something");
  const text = lines.join("\n");
  const passwords = [t.cluster.routerRole.password, t.cluster.catalog.password, ...t.cluster.shards.flatMap((s) => s.nodes.map((n) => n.password))];
  for (const secret of [...passwords, paramSecret, "postgres://"]) assert.not.ok(text.includes(secret), `a log line contains ${JSON.stringify(secret)}`);
  for (const l of lines) JSON.parse(l); // every line is one JSON object
});

test("safeError keeps structured fields, drops Postgres' message, scrubs credentials from others", () => {
  const pg = new ConnectError(`invalid input syntax for type bigint: "${paramSecret}"`, 3, undefined, [{
    desc: PostgresErrorDetailSchema,
    value: { sqlstate: "22P02", message: `invalid input syntax: "${paramSecret}"`, detail: "", hint: "", shard: "s0", node: "s0-primary", constraint: "", table: "", column: "" },
  }]);
  assert.equal(safeError(pg), { code: "invalid_argument", sqlstate: "22P02", shard: "s0", node: "s0-primary" });
  const dsn = safeError(new Error("cannot connect to postgres://router:hunter2@10.0.0.1:5432/app (password=hunter2)"));
  assert.not.match(String(dsn.message), "hunter2");
  assert.match(String(dsn.message), "postgres://[redacted]@10.0.0.1:5432/app");
  assert.is(safeError(new ConnectError("x".repeat(5000), 13)).message!.length <= 501, true);
  // An internal error carries what it wraps, with the frames where that was thrown (not its message twice).
  const wrapped = safeError(new ConnectError("internal error", 13, undefined, undefined, new TypeError("x is not a function, password=hunter2")));
  assert.is(wrapped.cause?.type, "TypeError");
  assert.not.match(JSON.stringify(wrapped), "hunter2");
  assert.match(String(wrapped.cause?.stack), /^at .*logging\.test\.ts/);
});

test("the silent logger (the default of startRouter) logs nothing at any level", () => {
  const quiet = silentLogger();
  assert.is(quiet.isLevelEnabled("fatal"), false);
  const seen: string[] = [];
  const loud = lineLogger((l) => seen.push(l), "silent");
  loud.fatal("x");
  loud.error({ password: "hunter2" }, "y");
  assert.equal(seen, []);
  const redacting = lineLogger((l) => seen.push(l), "info");
  redacting.info({ password: "hunter2", node: { password: "hunter3" }, params: ["p1"] }, "redacted");
  assert.is(seen.length, 1);
  assert.not.match(seen[0], /hunter|p1/);
});

test.run();
