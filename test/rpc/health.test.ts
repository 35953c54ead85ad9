// grpc.health.v1.Health over real shards: SERVING while any shard primary answers, NOT_SERVING when
// none does, back to SERVING when they return; Watch streams each change and ends when the router closes.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as assert from "uvu/assert";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import { RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import { startRouter } from "../../server/router.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

let t: TestRouter;
let health: ReturnType<typeof createClient<typeof Health>>;

test.before(hook(async () => {
  t = await startTestRouter({ shards: 2 });
  health = createClient(Health, createGrpcTransport({ baseUrl: t.router.url }));
}));

test.after(hook(async () => {
  await t?.stop();
}));

const primaries = () => t.cluster.shards.map((s) => s.nodes.find((n) => n.role === "primary")!.name);
const statusOf = async (service = "") => (await health.check({ service })).status;

test("Check and List: the whole router, RouterService and AdminService are SERVING, over gRPC and over Connect", async () => {
  assert.is(await statusOf(""), Status.SERVING);
  assert.is(await statusOf(RouterService.typeName), Status.SERVING);
  const overHttp1 = createClient(Health, createConnectTransport({ baseUrl: t.router.url, httpVersion: "1.1" }));
  assert.is((await overHttp1.check({})).status, Status.SERVING);
  const list = await health.list({});
  assert.equal(Object.fromEntries(Object.entries(list.statuses).map(([k, v]) => [k, v.status])), { "": Status.SERVING, [RouterService.typeName]: Status.SERVING, "shardrouter.v1.AdminService": Status.SERVING });
});

test("Check of an unknown service is NOT_FOUND; Watch of one says SERVICE_UNKNOWN and stays open", async () => {
  const err = await health.check({ service: "nope.Service" }).then(() => undefined, (e) => ConnectError.from(e));
  assert.is(err?.code, Code.NotFound);
  const stop = new AbortController();
  const watch = health.watch({ service: "nope.Service" }, { signal: stop.signal })[Symbol.asyncIterator]();
  assert.is((await watch.next()).value?.status, Status.SERVICE_UNKNOWN);
  stop.abort();
});

test("one primary down: still SERVING; every primary down: NOT_SERVING; back up: SERVING — and Watch sees each change", async () => {
  const [first, second] = primaries();
  const stop = new AbortController();
  const watch = health.watch({ service: RouterService.typeName }, { signal: stop.signal })[Symbol.asyncIterator]();
  try {
    assert.is((await watch.next()).value?.status, Status.SERVING);

    await t.cluster.stopNode(first);
    // Ask until a probe has seen the stopped primary; that same answer must still be SERVING.
    const seen = await waitFor(`a probe to find ${first} down`, async () => {
      const status = await statusOf();
      return t.router.planner.shards.shards[0].nodes[0].status === "down" ? status : undefined;
    });
    assert.is(seen, Status.SERVING);

    await t.cluster.stopNode(second);
    await waitFor("NOT_SERVING", async () => ((await statusOf()) === Status.NOT_SERVING ? true : undefined));
    assert.is(await statusOf(RouterService.typeName), Status.NOT_SERVING);
    assert.is((await watch.next()).value?.status, Status.NOT_SERVING);

    await t.cluster.startNode(second);
    await waitFor("SERVING again", async () => ((await statusOf()) === Status.SERVING ? true : undefined), 20_000);
    assert.is((await watch.next()).value?.status, Status.SERVING);
  } finally {
    stop.abort();
    await t.cluster.startNode(first).catch(() => {});
  }
});

test("closing the router ends open Watch streams instead of waiting for them", async () => {
  const other = await startRouter({ ...t.config, listen: { ...t.config.listen, port: 0 } }, { log: () => {} });
  const client = createClient(Health, createGrpcTransport({ baseUrl: other.url }));
  const watch = client.watch({})[Symbol.asyncIterator]();
  assert.is((await watch.next()).value?.status, Status.SERVING);
  const started = Date.now();
  await other.close();
  assert.ok(Date.now() - started < 3000, `close took ${Date.now() - started} ms (the listener's grace is 5 s)`);
  const end = await watch.next().then((r) => r.done, () => true);
  assert.ok(end, "the stream ended");
});

test.run();
