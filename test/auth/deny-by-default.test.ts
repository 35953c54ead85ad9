// Deny by default: every method of every service the router serves, enumerated from the descriptors,
// called without credentials (and with headers that claim an identity) over gRPC and Connect (binary
// and JSON): `unauthenticated`, and nothing any of them asked for happened on any shard.
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import * as reflectionV1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as reflectionV1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { AdminService } from "../../gen/shardrouter/v1/admin_pb.js";
import { RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import { accountsOnShards, seedAccounts } from "../harness/accounts.js";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { test } from "../harness/uvu.js";
import { scrape } from "../observability/scrape.js";
import { apiKey, assertCode, clientFor, type Protocol, protocols } from "./fixtures.js";

const services: DescService[] = [RouterService, AdminService, Health, reflectionV1.ServerReflection, reflectionV1alpha.ServerReflection];
const ops = apiKey("ops");
const authConfig = (open: { health: boolean; reflection: boolean }) => ({
  open,
  identities: [{ name: "ops", apiKeys: [{ id: "ops", sha256: ops.sha256 }], login: "router", rpcs: ["*"] }],
});
let t: TestRouter;

test.before(async () => {
  t = await startTestRouter({ shards: 3, spareShards: 1, auth: () => authConfig({ health: false, reflection: false }) });
  await seedAccounts(t, 20, 100);
  for (const s of t.cluster.shards) {
    const sql = t.direct(s.nodes[0]);
    await sql`create table canary (n int)`;
  }
});
test.after(async () => { await t?.stop(); });

/** A request for `method` that would leave a trace if it ran. */
function requestFor(method: DescMethod): Record<string, unknown> {
  switch (`${method.parent.name}/${method.name}`) {
    case "RouterService/ExecuteOnShard": return { key: "acct-1", sql: "insert into canary values (1)" };
    case "RouterService/ExecuteOnAll": return { sql: "insert into canary values (2)" };
    case "RouterService/Explain": return { sql: "select * from accounts where id = 1" };
    case "RouterService/ExecuteTransaction": return { requestId: "deny-1", statements: [{ key: "acct-1", sql: "insert into canary values (3)" }] };
    case "RouterService/Transfer": return { fromKey: "acct-1", toKey: "acct-2", amount: 7n, requestId: "deny-2" };
    case "RouterService/BeginTransaction": return { key: "acct-1" };
    case "RouterService/ExecuteInTransaction": return { transactionToken: "deny.token", sql: "insert into canary values (4)" };
    case "RouterService/NextIds": return { count: 5 };
    case "AdminService/StartReshard": return { jobId: "deny-job", addShards: [{ name: "shard-2", weight: 1 }] };
    case "AdminService/AddShard": return { name: "deny-shard", nodes: [{ host: "127.0.0.1", port: 1, database: "x", role: "primary" }] };
    case "ServerReflection/ServerReflectionInfo": return { messageRequest: { case: "listServices", value: "" } };
    default: return method.input.fields.some((f) => f.localName === "jobId") ? { jobId: "deny-job" } : {};
  }
}

/** Calls any method (unary, server stream, bidi) and drains it. */
async function call(service: DescService, method: DescMethod, protocol: Protocol, opts: Parameters<typeof clientFor>[3] = {}): Promise<void> {
  const client = clientFor(service, t.router.url, protocol, opts) as unknown as Record<string, (req: unknown) => unknown>;
  const req = create(method.input, requestFor(method));
  const fn = client[method.localName];
  if (method.methodKind === "unary") return void (await fn(req));
  const input = method.methodKind === "bidi_streaming" ? (async function* () { yield req; })() : req;
  for await (const _ of fn(input) as AsyncIterable<unknown>) { /* drain */ }
}

const canCall = (method: DescMethod, protocol: Protocol) => method.methodKind !== "bidi_streaming" || protocol === "grpc"; // bidi needs HTTP/2

test("every method of every service, without credentials or with identity headers, on every protocol: unauthenticated", async () => {
  const before = await accountsOnShards(t);
  let calls = 0;
  for (const service of services) {
    for (const method of service.methods) {
      for (const protocol of protocols) {
        if (!canCall(method, protocol)) continue;
        const what = `${service.name}/${method.name} over ${protocol}`;
        const err = await assertCode(call(service, method, protocol), Code.Unauthenticated, what);
        assert.match(err.message, "credentials", what);
        // Headers a client sets are no identity.
        await assertCode(call(service, method, protocol, { headers: { "x-user": "ops", "x-role": "admin", "x-shardrouter-identity": "ops" } }), Code.Unauthenticated, `${what} with x-user`);
        // Malformed or wrong credentials are refused the same way, never `internal`.
        await assertCode(call(service, method, protocol, { headers: { authorization: "Basic b3BzOm9wcw==" } }), Code.Unauthenticated, `${what} with Basic`);
        await assertCode(call(service, method, protocol, { token: "sr_not_a_key" }), Code.Unauthenticated, `${what} with a wrong key`);
        calls += 4;
      }
    }
  }
  assert.ok(calls > 60, `${calls} calls`);
  // Nothing happened: no canary row, no money moved, no request recorded, no reshard job, no shard added.
  for (const s of t.cluster.shards) {
    const sql = t.direct(s.nodes[0]);
    assert.equal((await sql`select count(*)::int as n from canary`)[0].n, 0, `canary on ${s.name}`);
    const [{ present }] = await sql`select to_regclass('shardrouter.requests') is not null as present`;
    if (present) assert.equal((await sql`select count(*)::int as n from shardrouter.requests`)[0].n, 0, `request records on ${s.name}`);
  }
  const after = await accountsOnShards(t);
  assert.is(after.total, before.total);
  const metrics = await scrape(t.router.url);
  assert.is(metrics.value("shardrouter_interactive_transactions_open"), 0, "no interactive transaction begun");
  assert.ok(metrics.has("shardrouter_ids_issued_total"));
  assert.is(metrics.value("shardrouter_ids_issued_total"), 0, "no id issued");
  const jobs = await clientFor(AdminService, t.router.url, "grpc", { token: ops.key }).listReshards({});
  assert.equal(jobs.reshards.length, 0);
  const catalog = t.direct(t.cluster.catalog);
  const registered = await catalog`select count(*)::int as n from shardrouter.shard_registry`;
  assert.is(registered[0].n, 0, "no shard registered");
});

test("the same calls with a valid key go through (the refusals above were auth, not the requests)", async () => {
  const client = clientFor(RouterService, t.router.url, "grpc", { token: ops.key });
  const res = await client.executeOnShard({ key: "acct-1", sql: "select count(*) from canary" });
  assert.is(res.result!.rows.length, 1);
  assert.is((await client.nextIds({ count: 5 })).ids.length, 5);
  await call(Health, Health.methods[0], "connect-json", { token: ops.key });
  await call(reflectionV1.ServerReflection, reflectionV1.ServerReflection.methods[0], "grpc", { token: ops.key });
});

test("health and reflection are open when the config says so, and everything else stays closed", async () => {
  t.router.reloadAuth(authConfig({ health: true, reflection: true }));
  try {
    for (const protocol of protocols) await call(Health, Health.methods[0], protocol);
    await call(reflectionV1.ServerReflection, reflectionV1.ServerReflection.methods[0], "grpc");
    await call(reflectionV1alpha.ServerReflection, reflectionV1alpha.ServerReflection.methods[0], "grpc");
    for (const protocol of protocols) {
      await assertCode(call(RouterService, RouterService.method.executeOnAll, protocol), Code.Unauthenticated, protocol);
      await assertCode(call(AdminService, AdminService.method.listReshards, protocol), Code.Unauthenticated, protocol);
    }
  } finally {
    t.router.reloadAuth(authConfig({ health: false, reflection: false }));
  }
});

test.run();
