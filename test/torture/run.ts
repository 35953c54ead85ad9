// One torture run: a fresh 4-shard cluster, the bank's accounts, the router as a supervised process,
// clients doing random transfers while the run's faults happen, then every invariant checked and
// printed. Every step is bounded; a failure names what it waited for. The run tears down everything
// it started whatever happened, so the next run starts clean.
import { randomUUID } from "node:crypto";
import { Code, type ConnectError } from "@connectrpc/connect";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type postgres from "postgres";
import { demoAccountCount, demoStartingBalance, seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { BankLedger, bankInvariants, type InFlight, type Invariant, preparedTransactions, randomTransfer, readBank } from "../harness/bank.js";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { TimedOut, waitUntil, within, withinOrCleanUp } from "./bounded.js";
import { runFaults } from "./faults.js";
import { describeFault, makePlan } from "./plan.js";
import { poolsIdle, routerSessions, transfersServed } from "./pools.js";
import { Progress } from "./progress.js";
import { Random } from "./random.js";
import { RouterSupervisor } from "./supervisor.js";

export interface RunOptions { seed: number; clients: number; transfersPerClient: number; log: (line: string) => void }
export interface RunResult { passed: boolean; seconds: number; invariants: Invariant[] }

const SHARDS = 4;
// Recovery settles a dead router's prepared transactions quickly; short lock waits turn a retry that
// meets its own still-prepared first attempt into ABORTED (retried) instead of a long wait.
const transactions = { inDoubtGraceMs: 300, recoveryIntervalMs: 100, lockTimeoutMs: 500 };
/** A transfer gets no definite answer if retrying it takes longer than this: the run fails. */
const GIVE_UP_AFTER_MS = 120_000;

export async function tortureRun(opts: RunOptions): Promise<RunResult> {
  const { log } = opts;
  const started = Date.now();
  const plan = makePlan(opts.seed, SHARDS);
  log(`  failpoints (one per router incarnation): ${plan.failpoints.join(", ") || "none"}`);
  for (const f of plan.faults) log(`  fault planned at ${describeFault(f, (i) => `shard-${i}`)}`);

  const invariants: Invariant[] = [];
  const check = (name: string, problems: string[]) => invariants.push({ name, problems });
  let t: TestRouter | undefined;
  let supervisor: RouterSupervisor | undefined;
  try {
    // The in-process router only seeds; its recovery is off so the supervised process is the one under test.
    t = await withinOrCleanUp("the cluster (4 shards and a catalog) to start", 180_000,
      startTestRouter({ shards: SHARDS, transactions: { ...transactions, recoveryIntervalMs: 600_000, inDoubtGraceMs: 600_000 } }), (x) => x.stop());
    const cluster = t.cluster;
    await within("the accounts to be seeded", 60_000, seedDemoAccounts(t.router.planner));
    const shards: { name: string; sql: postgres.Sql }[] = cluster.shards.map((s) => ({ name: s.name, sql: t!.direct(s.nodes[0]) }));
    supervisor = await withinOrCleanUp("the first router process to serve", 90_000,
      RouterSupervisor.start(cluster, { failpoints: plan.failpoints, transactions }), (x) => x.close());
    const sup = supervisor;
    log(`  +${((Date.now() - started) / 1000).toFixed(1)} s: cluster up, accounts seeded, router serving: the load starts`);

    // ---- the load and the faults, together ----
    const ledger = new BankLedger();
    const inFlight = new Map<string, InFlight>();
    const progress = new Progress();
    const totalTransfers = opts.clients * opts.transfersPerClient;
    const draws = new Random(opts.seed ^ 0x5bd1e995);
    const clientRandoms = Array.from({ length: opts.clients }, (_, c) => draws.fork(c));
    // Error answers by code; the requests whose attempt ran into its deadline are named (a router that
    // never answered a call is what such a request met).
    const errorCodes = new Map<string, number>();
    const deadlineMet: string[] = [];
    const onError = (req: { requestId: string }, err: ConnectError) => {
      errorCodes.set(Code[err.code], (errorCodes.get(Code[err.code]) ?? 0) + 1);
      if (err.code === Code.DeadlineExceeded) deadlineMet.push(`${req.requestId} at +${((Date.now() - started) / 1000).toFixed(1)} s`);
    };
    const work = Promise.all(clientRandoms.map(async (r, c) => {
      for (let i = 0; i < opts.transfersPerClient; i++) {
        const req = randomTransfer((n) => r.int(n), demoAccountCount, `${c}-${i}-${randomUUID()}`);
        await ledger.transfer(req, { client: () => sup.client, inFlight, giveUpAfterMs: GIVE_UP_AFTER_MS, replay: i % 10 === 3, onError });
        progress.bump();
      }
    }));
    const faults = runFaults(plan.faults, { cluster, supervisor: sup, progress, totalTransfers, log, runStarted: started });
    // A hang bound, not a speed target: generous for a slow shared machine, finite for a hung router.
    const loadBoundMs = 60_000 + 1_500 * opts.transfersPerClient + 20_000 * plan.faults.length + GIVE_UP_AFTER_MS;
    const pending: string[] = [];
    try {
      await within(`every client's ${opts.transfersPerClient} transfers to settle`, loadBoundMs, work);
    } catch (err) {
      if (!(err instanceof TimedOut)) throw err;
      const now = Date.now();
      pending.push(err.message, ...[...inFlight.values()].map((f) =>
        `still pending: ${f.request.requestId} (${f.request.from} → ${f.request.to}, ${f.request.amount}) for ${now - f.startedAt} ms, attempt ${f.attempts}, last error: ${f.lastError ?? "none"}`));
    } finally {
      progress.end();
    }
    if (pending.length === 0 && inFlight.size > 0) pending.push(`${inFlight.size} calls registered after every client settled`);
    check("every client call settled", pending);
    log(`  +${((Date.now() - started) / 1000).toFixed(1)} s: the load is over, ${progress.count}/${totalTransfers} transfers settled`);
    const faultProblems = await within("the faults to finish", 300_000, faults).catch((err) => [(err as Error).message]);
    check("every fault done and undone", faultProblems);

    // ---- after the load: recovery, then the invariants ----
    const router = await sup.serving(120_000);
    let left: string[] = [];
    const prepared = await waitUntil("no prepared transaction on any shard (recovery by the serving router)", 60_000, async () => {
      left = await preparedTransactions(shards);
      return left.length === 0 ? true : `${left.length} prepared: ${left.slice(0, 5).join(", ")}`;
    }).then(() => [], (err) => [(err as Error).message]);
    check("nothing left prepared", prepared);

    const state = await within("the balances to be read from every shard", 60_000, readBank(shards.map((s) => s.sql)));
    invariants.push(...bankInvariants(state, ledger, { accounts: demoAccountCount, startingBalance: BigInt(demoStartingBalance) }));

    // 60 s: longer than any timeout of the router's own (statements 30 s, an abandoned statement's
    // slot 2 × connect timeout = 10 s), so a count still up then is a slot that never comes back.
    const pools = await waitUntil(`every node's pool gauges at 0 on the router (${router.url}/metrics)`, 60_000, () => poolsIdle(sup.url, cluster))
      .then(() => [], async (err) => {
        const file = join(tmpdir(), `torture-${opts.seed}-router.log`);
        writeFileSync(file, sup.output());
        return [(err as Error).message, ...(await routerSessions(shards)), `the serving router's output: ${file}`];
      });
    check("every pool's in-use count back to 0", pools);

    const unexpected = sup.deaths.filter((d) => d.cause === "unexpected");
    check("the router died only of injected faults", [
      ...unexpected.map((d) => `incarnation ${d.incarnation} (failpoint ${d.failpoint || "none"}): ${d.how}\n${d.detail ?? ""}`),
      ...(sup.broken ? [sup.broken.message] : []),
    ]);

    log(`  error answers (retried unless rejected): ${[...errorCodes].map(([c, n]) => `${c} ${n}`).join(", ") || "none"}` +
      (deadlineMet.length ? `; attempts that met their deadline: ${deadlineMet.slice(0, 8).join(", ")}${deadlineMet.length > 8 ? ", …" : ""}` : ""));
    const served = await transfersServed(sup.url).catch(() => NaN);
    log(`  ${ledger.acknowledged.length} acknowledged, ${ledger.rejected} rejected (insufficient funds), ${ledger.replaysChecked} replays checked; ` +
      `router incarnations: ${sup.incarnations} (${sup.deaths.map((d) => `#${d.incarnation} ${d.cause}${d.failpoint && d.cause === "failpoint" ? ` at ${d.failpoint}` : ""}`).join(", ") || "no deaths"}); ` +
      `unfired failpoints: ${sup.unfiredFailpoints.join(", ") || "none"}; the last incarnation handled ${served} transfer calls`);
  } catch (err) {
    check("the run itself", [(err as Error).stack ?? String(err)]);
  } finally {
    await supervisor?.close().catch((err) => check("teardown: router processes", [(err as Error).message]));
    await within("the cluster to stop", 120_000, t?.stop() ?? Promise.resolve()).catch((err) => check("teardown: cluster", [(err as Error).message]));
  }
  for (const i of invariants) {
    log(`  ${i.problems.length === 0 ? "ok    " : "FAILED"} ${i.name}`);
    for (const p of i.problems) log(`           ${p.replace(/\n/g, "\n           ")}`);
  }
  return { passed: invariants.every((i) => i.problems.length === 0), seconds: (Date.now() - started) / 1000, invariants };
}
