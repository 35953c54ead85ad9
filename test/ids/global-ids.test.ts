// Global ids over the real RPC and a real catalog: two routers on one catalog lease different worker
// ids and issue 100,000 ids each with no duplicate, each router's increasing; the lease (WorkerLease
// over the catalog) with an injected monotonic clock: a router whose renewals fail stops issuing ids
// when its lease runs out, an expired worker id is taken over only after the margin, and only above
// the milliseconds its previous owner may have used; a router that lost its id claims another.
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as assert from "uvu/assert";
import { RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import { Catalog } from "../../server/catalog/catalog.js";
import { parseConfig } from "../../server/config/config.js";
import { decodeId, Snowflake } from "../../server/ids/snowflake.js";
import { CatalogWorkerStore, WorkerLease, type WorkerStore } from "../../server/ids/worker-lease.js";
import { type RunningRouter, startRouter } from "../../server/router.js";
import { failure } from "../harness/failure.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";
import { scrape } from "../observability/scrape.js";

let t: TestRouter;
let second: RunningRouter;
let catalog: Catalog;

test.before(hook(async () => {
  t = await startTestRouter({ shards: 2, ids: { leaseMs: 600, takeoverMarginMs: 300 } });
  second = await startRouter({ ...t.config, listen: { ...t.config.listen, port: 0 } });
  catalog = await Catalog.open(t.config.catalog!);
}));

test.after(hook(async () => {
  await second?.close();
  await catalog?.close();
  await t?.stop();
}));

const clientOf = (url: string) => createClient(RouterService, createConnectTransport({ baseUrl: url, httpVersion: "1.1" }));

test("two routers on one catalog lease different worker ids, recorded in the catalog under their router ids", async () => {
  assert.ok(t.router.idWorkerId !== undefined && second.idWorkerId !== undefined);
  assert.is.not(t.router.idWorkerId, second.idWorkerId);
  const rows = await catalog.sql<{ worker_id: number; owner: string }[]>`
    select worker_id, owner from shardrouter.id_workers where lease_until > now() order by worker_id`;
  const byOwner = Object.fromEntries(rows.map((r) => [r.owner, r.worker_id]));
  assert.is(byOwner[t.router.routerId], t.router.idWorkerId);
  assert.is(byOwner[second.routerId], second.idWorkerId);
});

test("100,000 ids from each router, in batches over the RPC at once: no duplicate, each router's increasing", async () => {
  const fetchAll = async (rpc: ReturnType<typeof clientOf>) => {
    const ids: bigint[] = [];
    const workers = new Set<number>();
    for (let i = 0; i < 10; i++) {
      const r = await rpc.nextIds({ count: 10_000 });
      assert.is(r.ids.length, 10_000);
      workers.add(r.workerId);
      ids.push(...r.ids);
    }
    return { ids, workers };
  };
  const issuedBefore = (await scrape(t.router.url)).value("shardrouter_ids_issued_total");
  const [a, b] = await Promise.all([fetchAll(t.grpc), fetchAll(clientOf(second.url))]);
  for (const [name, run] of [["first", a], ["second", b]] as const) {
    assert.is(run.workers.size, 1, `${name}: one worker id`);
    for (let i = 1; i < run.ids.length; i++) if (run.ids[i] <= run.ids[i - 1]) assert.unreachable(`${name}: id ${i} is not above the one before`);
    assert.ok(run.ids.every((id) => id > 0n && decodeId(id).workerId === [...run.workers][0]), `${name}: positive, with its worker id`);
  }
  assert.is.not([...a.workers][0], [...b.workers][0]);
  assert.is(new Set([...a.ids, ...b.ids]).size, 200_000, "no id issued twice");
  // Ids sort by time: they decode to milliseconds of now.
  const ms = decodeId(a.ids.at(-1)!).ms;
  assert.ok(Math.abs(ms - Date.now()) < 60_000, new Date(ms).toISOString());
  assert.is((await scrape(t.router.url)).value("shardrouter_ids_issued_total") - issuedBefore, 100_000);
});

test("count out of range: invalid_argument with a clear message", async () => {
  for (const count of [0, 10_001]) {
    const err = await failure(t.grpc.nextIds({ count }));
    assert.is(err.code, Code.InvalidArgument);
    assert.match(err.rawMessage, `count must be between 1 and 10000, got ${count}`);
  }
});

test("a router whose worker id was taken over stops using it at its next renewal and leases another", async () => {
  const lost = second.idWorkerId!;
  await catalog.sql`update shardrouter.id_workers set owner = 'someone-else' where worker_id = ${lost}`;
  const now = await waitFor("a new worker id", () => (second.idWorkerId !== undefined && second.idWorkerId !== lost ? second.idWorkerId : undefined));
  const r = await clientOf(second.url).nextIds({ count: 3 });
  assert.is(r.workerId, now);
  assert.ok(r.ids.every((id) => decodeId(id).workerId === now));
  await catalog.sql`delete from shardrouter.id_workers where worker_id = ${lost}`;
});

/** The catalog store, with a switch that makes every call fail (a catalog cut off). */
function switchable(store: WorkerStore): WorkerStore & { down: boolean } {
  const s = {
    down: false,
    claim: (...a: Parameters<WorkerStore["claim"]>) => (s.down ? Promise.reject(new Error("connection refused")) : store.claim(...a)),
    renew: (...a: Parameters<WorkerStore["renew"]>) => (s.down ? Promise.reject(new Error("connection refused")) : store.renew(...a)),
    release: (...a: Parameters<WorkerStore["release"]>) => store.release(...a),
  };
  return s;
}

test("renewals that fail: ids go on until the lease runs out (monotonic clock), then unavailable, and again after a renewal", async () => {
  const mono = { ms: 0 };
  const store = switchable(new CatalogWorkerStore(catalog));
  const lease = new WorkerLease({ store, owner: "lease-test-a", leaseMs: 1000, marginMs: 500, maxWorkers: 1024, monotonic: () => mono.ms });
  const ids = new Snowflake({ worker: lease, maxBackwardsMs: 5 });
  try {
    const before = await failure(ids.next(1));
    assert.match(before.rawMessage, "not claimed a worker id");
    await lease.renew();
    const workerId = lease.current().workerId;
    const first = await ids.next(5);
    assert.is(first.workerId, workerId);
    store.down = true;
    mono.ms = 500;
    await lease.renew(); // fails: the lease still holds
    assert.is((await ids.next(1)).workerId, workerId);
    mono.ms = 999;
    await ids.next(1);
    mono.ms = 1000; // counted from before the last renewal that was stored
    const err = await failure(ids.next(1));
    assert.is(err.code, Code.Unavailable);
    assert.match(err.rawMessage, `lease on worker id ${workerId} ran out without a renewal`);
    assert.match(err.rawMessage, "connection refused");
    store.down = false;
    await lease.renew(); // no one took it: the same id, renewed
    const again = await ids.next(1);
    assert.is(again.workerId, workerId);
    assert.ok(again.ids[0] > first.ids[4]);
  } finally {
    await lease.stop();
  }
});

test("an expired worker id is taken over only after the margin, and only above the milliseconds its owner reserved; the owner then stops at once", async () => {
  // maxWorkers 1: routers a and b want worker id 0, which the test routers hold (they start with the lowest free ones).
  const occupied = await catalog.sql<{ worker_id: number }[]>`select worker_id from shardrouter.id_workers where worker_id = 0 and lease_until > now()`;
  assert.is(occupied.length, 1, "worker id 0 is held by a test router");
  const store = new CatalogWorkerStore(catalog);
  const a = new WorkerLease({ store, owner: "takeover-a", leaseMs: 60_000, marginMs: 5000, maxWorkers: 1 });
  const b = new WorkerLease({ store, owner: "takeover-b", leaseMs: 60_000, marginMs: 5000, maxWorkers: 1 });
  try {
    await a.renew();
    assert.match((await failure(Promise.resolve().then(() => a.current()))).rawMessage, "every worker id (ids.maxWorkers = 1) is leased by another router");
    // Worker id 0's lease ended 4 s ago (its router stopped renewing): still inside the 5 s margin.
    await catalog.sql`update shardrouter.id_workers set owner = 'gone-router', lease_until = now() - interval '4 seconds', issued_until_ms = ${Date.now() + 30_000} where worker_id = 0`;
    await a.renew();
    assert.throws(() => a.current(), /every worker id/);
    await catalog.sql`update shardrouter.id_workers set lease_until = now() - interval '6 seconds' where worker_id = 0`;
    await a.renew();
    const grant = a.current();
    assert.is(grant.workerId, 0);
    const [{ reserved }] = await catalog.sql<{ reserved: string }[]>`select issued_until_ms::text as reserved from shardrouter.id_workers where worker_id = 0`;
    assert.ok(grant.floorMs > Date.now() + 20_000, "the floor is the gone router's reservation");
    assert.ok(Number(reserved) >= grant.floorMs);
    // Its ids would come from 30 s in the future: more than the clock may wait, so refused, never repeated.
    const err = await failure(new Snowflake({ worker: a, maxBackwardsMs: 10 }).next(1));
    assert.match(err.rawMessage, "behind the last id issued with worker id 0");
    // b gets nothing while a holds it; a loses it once b took it over after a's lease and margin.
    await b.renew();
    assert.throws(() => b.current(), /every worker id/);
    await catalog.sql`update shardrouter.id_workers set lease_until = now() - interval '6 seconds' where worker_id = 0`;
    await b.renew();
    assert.is(b.current().workerId, 0);
    await a.renew();
    const lost = await failure(Promise.resolve().then(() => a.current()));
    assert.is(lost.code, Code.Unavailable);
    assert.match(lost.rawMessage, "worker id 0 was taken over by another router after this router's lease on it ended, and every worker id");
  } finally {
    await a.stop();
    await b.stop();
  }
});

test("a router's clock turned back: a small step is waited out, a large one refused (counted, logged) until it catches up; no id repeats", async () => {
  const clock = { offset: 0 };
  const lines: string[] = [];
  const third = await startRouter({ ...t.config, listen: { ...t.config.listen, port: 0 } }, { clock: () => Date.now() + clock.offset, log: (l) => lines.push(l) });
  try {
    const rpc = clientOf(third.url);
    const first = await rpc.nextIds({ count: 100 });
    clock.offset = -5; // within ids.maxClockBackwardsMs (10)
    const second = await rpc.nextIds({ count: 100 });
    assert.ok(second.ids[0] > first.ids.at(-1)!);
    clock.offset = -60_000;
    const err = await failure(rpc.nextIds({ count: 1 }));
    assert.is(err.code, Code.Unavailable);
    assert.match(err.rawMessage, /the clock is \d+ ms behind the last id issued/);
    const m = await scrape(third.url);
    assert.is(m.value("shardrouter_ids_clock_backwards_total", { outcome: "refused" }), 1);
    assert.is(m.value("shardrouter_ids_issued_total"), 200);
    assert.ok(lines.some((l) => l.includes("NextIds refused")), lines.join("\n"));
    clock.offset = 0;
    const after = await rpc.nextIds({ count: 1 });
    assert.ok(after.ids[0] > second.ids.at(-1)!);
  } finally {
    await third.close();
  }
});

test("without a catalog: NextIds is unavailable and says why; with ids.workerId it issues ids with that worker id", async () => {
  const { catalog: _, ...rest } = t.config;
  const bare = await startRouter(parseConfig({ ...rest, listen: { host: "127.0.0.1", port: 0 } }));
  try {
    const err = await failure(clientOf(bare.url).nextIds({ count: 1 }));
    assert.is(err.code, Code.Unavailable);
    assert.match(err.rawMessage, "no catalog to lease a worker id from and no ids.workerId");
  } finally {
    await bare.close();
  }
  const fixed = await startRouter(parseConfig({ ...rest, listen: { host: "127.0.0.1", port: 0 }, ids: { workerId: 1000 } }));
  try {
    const r = await clientOf(fixed.url).nextIds({ count: 2 });
    assert.is(r.workerId, 1000);
    assert.equal(r.ids.map((id) => decodeId(id).workerId), [1000, 1000]);
  } finally {
    await fixed.close();
  }
  assert.throws(() => parseConfig({ ...t.config, ids: { workerId: 3 } }), /ids.workerId: leave it out when there is a catalog/);
});

test.run();
