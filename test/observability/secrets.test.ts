// No password and no DSN with credentials in anything the router says: the router runs as its own
// process (as deployed) at the most verbose log level, with passwords in its config, a shard whose
// node refuses connections and one whose password is wrong. Every line it prints, every answer, and
// every error's message, details, metadata and cause are searched for every password in play.
import { ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { toJsonString } from "@bufbuild/protobuf";
import * as assert from "uvu/assert";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { PostgresErrorDetailSchema } from "../../gen/shardrouter/v1/errors_pb.js";
import { GetTopologyResponseSchema, RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import { Catalog } from "../../server/catalog/catalog.js";
import { ShardMapStore } from "../../server/catalog/shard-map-store.js";
import { devConfig } from "../../server/dev-cluster/dev-config.js";
import { pickFreePorts } from "../../server/dev-cluster/ports.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { type RouterProcess, startRouterProcess } from "../harness/router-process.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
let router: RouterProcess;
const refusedPassword = "refused-Pa55word-7781";
const wrongPassword = "wrong-Pa55word-3319";
const str = (value: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value } });
const seen: string[] = []; // everything a caller or an operator could read

test.before(hook(async () => {
  t = await startTestRouter({ shards: 2 });
  const [closedPort] = await pickFreePorts(1); // nothing listens there: connections are refused
  const config = devConfig(t.cluster, {}) as { shards: { name: string; nodes: Record<string, unknown>[] }[] };
  const real = config.shards[0].nodes[0];
  config.shards.push(
    { name: "refusing", nodes: [{ ...real, name: "refusing-primary", port: closedPort, password: refusedPassword }] },
    { name: "badauth", nodes: [{ ...real, name: "badauth-primary", password: wrongPassword }] },
  );
  // The catalog's shard map (seeded by the test router) must name the two extra shards too.
  const catalog = await Catalog.open(t.config.catalog!);
  try {
    const store = new ShardMapStore(catalog);
    const all = config.shards.map((s) => ({ name: s.name, weight: 1, state: "active" as const }));
    assert.ok(await store.publish(await store.latestVersion(), t.config.placement, all, "secrets test"));
  } finally {
    await catalog.close();
  }
  router = await startRouterProcess(t.cluster, { config, env: { SHARDROUTER_LOG_LEVEL: "trace" } });
}));
test.after(hook(async () => {
  await router?.kill("SIGINT");
  await t?.stop();
}));

function record(err: unknown): void {
  const e = ConnectError.from(err);
  seen.push(e.message, e.rawMessage, String(e.cause ?? ""));
  e.metadata.forEach((v, k) => seen.push(`${k}: ${v}`));
  for (const d of e.details) seen.push(JSON.stringify(d, (_, v) => (v instanceof Uint8Array ? Buffer.from(v).toString("latin1") : v)));
  for (const d of e.findDetails(PostgresErrorDetailSchema)) seen.push(toJsonString(PostgresErrorDetailSchema, d));
}

async function keyOn(shard: string): Promise<string> {
  for (let i = 0; i < 10_000; i++) if ((await router.client.route({ key: `k${i}` })).shard === shard) return `k${i}`;
  throw new Error(`no key routes to ${shard}`);
}

test("no password or credentialed DSN in any answer, error or line of output", async () => {
  const clients = [router.client, createClient(RouterService, createGrpcTransport({ baseUrl: router.url }))];
  const good = await keyOn(t.cluster.shards[0].name);
  for (const shard of ["refusing", "badauth"]) {
    const key = await keyOn(shard);
    for (const client of clients) {
      await client.executeOnShard({ key, sql: "select 1" }).then(() => { throw new Error(`${shard} answered`); }, record);
      await client.transfer({ fromKey: good, toKey: key, amount: 1n, requestId: `secret-${shard}-${Math.random()}` }).then(() => undefined, record);
      await client.executeTransaction({ requestId: `tx-${shard}-${Math.random()}`, statements: [{ key, sql: "select $1::text", params: [str("x")] }] })
        .then(() => undefined, record);
    }
  }
  for (const client of clients) {
    await client.executeOnAll({ sql: "select 1" }).then(() => undefined, record);
    const partial = await client.executeOnAll({ sql: "select 1 as one", allowPartial: true });
    seen.push(JSON.stringify(partial.shards.map((s) => ({ shard: s.shard, error: s.error }))));
    const topology = await client.getTopology({});
    seen.push(toJsonString(GetTopologyResponseSchema, topology));
  }
  const health = createClient(Health, createConnectTransport({ baseUrl: router.url, httpVersion: "1.1" }));
  seen.push(JSON.stringify(await health.check({ service: "" }).catch((e) => ConnectError.from(e).message)));
  const metrics = await fetch(`${router.url}/metrics`).then((r) => r.text());
  seen.push(metrics);

  // The failures were logged (so the scan below reads real lines about them).
  await waitFor("the router to log the refused and the failed login", () =>
    (router.output().includes("refusing") && router.output().includes("badauth") ? true : undefined));
  const output = router.output();
  assert.ok(output.split("\n").length > 10, "the router printed its lines");

  const passwords = new Set<string>([refusedPassword, wrongPassword]);
  for (const shard of t.config.shards) for (const n of shard.nodes) if (n.password) passwords.add(n.password);
  if (t.config.catalog?.password) passwords.add(t.config.catalog.password);
  for (const s of t.cluster.shards) for (const n of s.nodes) passwords.add(n.password);
  const everything = [output, ...seen].join("\n");
  for (const p of passwords) assert.not.ok(everything.includes(p), "a password appeared in the router's output or answers");
  assert.not.match(everything, /[a-z]+:\/\/[^\s/:@]+:[^\s@]+@/i, "a DSN with credentials appeared");
  assert.not.match(everything, /password\s*=\s*[^\s,;'"]+/i, "a password= setting appeared");
});

test.run();
