// Issue 11's "done when", on real shards: 4 shards, 100,000 accounts, 8 clients running Transfers and
// inserts throughout, through two router instances. A fifth shard is added; the job is started on
// one router (a separate process), which is SIGKILLed once the job streams; a source shard is
// restarted during the stream; the other router takes the job over when the lease runs out and the
// job copies, streams, verifies and cuts over by itself. Afterwards every account is exactly once on
// the shard Route names, the money is all there, every acknowledged insert is there, no client saw an
// error other than a retried unavailable or aborted one, and the new shard holds 20% ± 5%.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as assert from "uvu/assert";
import { AdminService, ReshardPhase } from "../../gen/shardrouter/v1/admin_pb.js";
import { RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import { devConfig } from "../../server/dev-cluster/dev-config.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { type RouterProcess, startRouterProcess } from "../harness/router-process.js";
import { hook, test } from "../harness/uvu.js";
import { accountsOnShards, seedAccounts } from "../harness/accounts.js";

const accounts = 100_000;
const clients = 8;
let t: TestRouter;
// The routers' failed-RPC lines, shown when a client got an error it could not retry.
const faults: string[] = [];

test.before(hook(async () => {
  t = await startTestRouter({ shards: 5, spareShards: 1, log: (l) => { if (l.includes('"rpc failed"')) faults.push(l); } });
  await seedAccounts(t, accounts, 100);
}));
test.after(hook(async () => { await t?.stop(); }));

interface Tally { transfers: number; inserts: string[]; retries: number; deadlines: number; failures: string[] }
type Rpc = ReturnType<typeof createClient<typeof RouterService>>;

/** A client that prefers `first` and falls back to `second` once `first` is gone; retries unavailable and aborted. */
async function client(name: string, index: number, routers: () => Rpc[], stop: { now: boolean }, tally: Tally): Promise<void> {
  const call = async <T>(what: (rpc: Rpc) => Promise<T>): Promise<T | undefined> => {
    for (let attempt = 0; attempt < 100; attempt++) {
      const rpc = routers()[0];
      try {
        return await what(rpc);
      } catch (err) {
        const code = err instanceof ConnectError ? err.code : undefined;
        // A deadline can pass when the router that had the call dies or a shard restarts under it:
        // retried like the others (a Transfer by its request id, an insert that does nothing twice), and counted.
        if (code === Code.DeadlineExceeded) tally.deadlines++;
        if (code !== Code.Unavailable && code !== Code.Aborted && code !== Code.DeadlineExceeded && routers()[0] === rpc) {
          tally.failures.push(`${Code[code ?? Code.Unknown]}: ${(err as Error).message}`);
          return undefined;
        }
        tally.retries++;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    tally.failures.push("gave up after 100 attempts");
    return undefined;
  };
  for (let i = 0; !stop.now; i++) {
    const from = `acct-${(i * 7919 + index * 12_347) % accounts}`;
    const to = `acct-${(i * 15_485_863 + index * 31_337 + 1) % accounts}`;
    if (from !== to && await call((rpc) => rpc.transfer({ fromKey: from, toKey: to, amount: 1n, requestId: `${name}-${i}` }, { timeoutMs: 20_000 }))) tally.transfers++;
    const key = `${name}-new-${i}`;
    const inserted = await call((rpc) => rpc.executeOnShard({
      key, sql: "insert into accounts (id, balance) values ($1, 100) on conflict (id) do nothing", params: [{ kind: { case: "stringValue", value: key } }],
    }, { timeoutMs: 20_000 }));
    if (inserted) tally.inserts.push(key);
  }
}

test("a fifth shard, two routers, 8 clients: the job's router SIGKILLed while streaming and a source restarted; the other router finishes the job", async () => {
  const base = devConfig(t.cluster, { port: 0, spareShards: 1 }) as Record<string, Record<string, unknown>>;
  let doomed: RouterProcess | undefined = await startRouterProcess(t.cluster, {
    config: { ...base, transactions: { routerId: "doomed" }, resharding: { ...base.resharding, leaseMs: 1500 } },
  });
  const viaDoomed = doomed.client;
  const doomedOutput = doomed.output;
  const lostRouterFaults = () => doomedOutput().split("\n").filter((l) => l.includes('"rpc failed"'));
  const viaSurvivor = t.connect;
  const stop = { now: false };
  const tallies: Tally[] = [];
  const running = Array.from({ length: clients }, (_, i) => {
    const tally: Tally = { transfers: 0, inserts: [], retries: 0, deadlines: 0, failures: [] };
    tallies.push(tally);
    // Half the clients go through the router that will die, then through the other.
    return client(`c${i}`, i, () => (i % 2 === 0 && doomed ? [viaDoomed] : [viaSurvivor]), stop, tally);
  });
  const survivorAdmin = createClient(AdminService, createConnectTransport({ baseUrl: t.router.url, httpVersion: "1.1" }));
  const phase = async () => (await survivorAdmin.getReshard({ jobId: "fifth" })).reshard!;
  try {
    await waitFor("the clients to get going", () => (tallies.every((x) => x.transfers > 3) ? true : undefined), 30_000);
    const started = await createClient(AdminService, createConnectTransport({ baseUrl: doomed.url, httpVersion: "1.1" }))
      .startReshard({ jobId: "fifth", addShards: [{ name: "shard-4", weight: 1 }], autoCutover: true });
    assert.is(started.reshard?.runner, "doomed");
    const estimated = started.reshard!.moves.reduce((n, m) => n + m.estimatedRows, 0n);
    assert.ok(estimated > BigInt(accounts * 0.15) && estimated < BigInt(accounts * 0.25), `about a fifth moves: ${estimated}`);
    await waitFor("the job streaming (past its copy)", async () => ((await phase()).phase >= ReshardPhase.CATCHING_UP ? true : undefined), 120_000);
    // The job's router dies while its streams run; its clients move to the other router.
    const dying = doomed;
    doomed = undefined;
    assert.is(await dying.kill("SIGKILL"), "SIGKILL");
    // A source restarts during the stream (before the other router takes the job over, or while it does).
    await t.cluster.stopNode(t.cluster.shards[1].nodes[0].name, "immediate");
    await t.cluster.startNode(t.cluster.shards[1].nodes[0].name);
    const done = await waitFor("the job taken over and done", async () => {
      const r = await phase();
      if (r.phase === ReshardPhase.FAILED) throw new Error(`the job failed: ${r.error}`);
      return r.phase === ReshardPhase.DONE ? r : undefined;
    }, 180_000);
    assert.is(done.toVersion, 2n);
    assert.is(done.verify?.mismatches, 0n);
    assert.ok((done.verify?.rowsCompared ?? 0n) >= estimated, `every moving row was compared: ${done.verify?.rowsCompared} of ${estimated}, ${JSON.stringify(done.sources.map((s) => [s.source, String(s.rowsCopied)]))}`);
    const before = tallies.map((x) => x.transfers);
    await waitFor("the clients to go on under the new map", () => (tallies.every((x, i) => x.transfers > before[i] + 3) ? true : undefined), 30_000);
  } finally {
    stop.now = true;
    await Promise.all(running);
    await doomed?.kill("SIGKILL");
    faults.push(...lostRouterFaults());
  }
  const retried = tallies.reduce((n, x) => n + x.retries, 0);
  console.log(`  clients: ${tallies.reduce((n, x) => n + x.transfers, 0)} transfers, ${tallies.reduce((n, x) => n + x.inserts.length, 0)} inserts, ${retried} retried (unavailable, aborted or, ${tallies.reduce((n, x) => n + x.deadlines, 0)} of them, deadline exceeded)`);
  assert.equal(tallies.flatMap((x) => x.failures).slice(0, 3), [], `no error a client had to give up on; the routers logged:\n${faults.slice(0, 5).join("\n")}`);

  const { owners, total, negative } = await accountsOnShards(t);
  assert.equal(negative.slice(0, 3), [], "no negative balance");
  assert.equal([...owners].filter(([, w]) => w.length > 1).slice(0, 3), [], "no account on two shards");
  for (const key of tallies.flatMap((x) => x.inserts)) if (!owners.has(key)) assert.unreachable(`acknowledged insert ${key} is lost`);
  assert.is(total, 100n * BigInt(owners.size), "the money is all there (every account started at 100; transfers move it)");
  const map = t.router.planner.map;
  for (const [key, [where]] of owners) {
    const placed = map.strategy.place(key) as { shard: string };
    if (placed.shard !== where) assert.unreachable(`${key} is on ${where}, Route says ${placed.shard}`);
  }
  const onNew = [...owners.values()].filter(([w]) => w === "shard-4").length;
  assert.ok(Math.abs(onNew / owners.size - 0.2) <= 0.05, `the new shard holds 20% ± 5%: ${onNew} of ${owners.size}`);
  for (const s of t.cluster.shards) {
    const slots = await t.direct(s.nodes[0])`select slot_name from pg_replication_slots where slot_name like 'shardrouter_%'`;
    assert.is(slots.length, 0, `no slot left on ${s.name}`);
  }
});

test.run();
