// Runs the catalog's reshard jobs on this router, for as long as it holds their leases: copy and
// stream (ReshardJob), then once every stream has caught up, verify, then (asked for, or automatic)
// the cutover, then the clean-up of the sources. Progress goes to the catalog, where GetReshard reads
// it. A router that takes over a job from a dead one resumes it: data movement from what the nodes
// hold; a cutover left half done is finished (the new map was committed) or aborted (it was not).
import type postgres from "postgres";
import type { FenceStore } from "../catalog/fence-store.js";
import type { ReshardJobStore, StoredJob, StoredSourceProgress, StoredVerify } from "../catalog/reshard-job-store.js";
import { shardMapOf } from "../catalog/shard-map-follower.js";
import type { ShardMapStore } from "../catalog/shard-map-store.js";
import { type Config, passwordOf } from "../config/config.js";
import type { Planner } from "../execution/planner.js";
import type { DirectoryStore } from "../placement/directory.js";
import type { NodeConfig } from "../shards/node-pool.js";
import type { ShardSet } from "../shards/shard-set.js";
import { CutoverError } from "./cutover.js";
import { setMinimumEpoch } from "./epoch-guard.js";
import { parseLsn } from "./lsn.js";
import { nodeClient } from "./node-client.js";
import { ReshardJob } from "./reshard-job.js";
import { verifyMove } from "./verify.js";

export interface JobRunnerDeps {
  jobs: ReshardJobStore;
  fences: FenceStore;
  maps: ShardMapStore;
  router: string;
  planner: Planner;
  config: Pick<Config, "shards" | "resharding" | "pool">;
  directory?: DirectoryStore;
  log(line: string): void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The primary of `shard` as the resharder logs in to it (resharding.user, or the node's own login; the node's TLS either way). */
export function resharderNode(config: Pick<Config, "resharding">, shards: ShardSet, shard: string): NodeConfig {
  const s = shards.definition(shard);
  const node = s?.nodes.find((n) => n.role === "primary");
  if (!s || !node) throw new Error(`shard ${shard} is not known to this router (neither configured nor registered)`);
  const r = config.resharding;
  return {
    name: node.name ?? `${shard}-primary`, host: node.host, port: node.port, database: node.database, role: "primary", ssl: node.ssl,
    user: r.user ?? node.user, password: r.user ? passwordOf({ ...node, password: r.password, passwordEnv: r.passwordEnv }) : passwordOf(node),
  };
}

export class JobRunner {
  private readonly running = new Map<string, Promise<void>>();
  private readonly lost = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private ticking: Promise<void> | undefined;

  constructor(private readonly deps: JobRunnerDeps) {}

  start(): void {
    const every = Math.max(50, Math.floor(this.deps.config.resharding.leaseMs / 3));
    this.timer = setInterval(() => { this.ticking ??= this.tick().finally(() => { this.ticking = undefined; }); }, every);
    this.timer.unref();
  }

  /** Claims and renews leases now; starts jobs it newly holds (tests and StartReshard call it). */
  async tick(): Promise<void> {
    if (this.stopped) return;
    let claimed: StoredJob[];
    try {
      claimed = await this.deps.jobs.claim(this.deps.router, this.deps.config.resharding.leaseMs);
    } catch {
      // The catalog is unreachable: a lease that runs out stops the job below, via report().
      return;
    }
    for (const job of claimed) {
      if (this.running.has(job.id)) continue;
      this.lost.delete(job.id);
      this.running.set(job.id, this.run(job).catch((err) => this.deps.log(`reshard ${job.id}: ${(err as Error).message}`))
        .finally(() => this.running.delete(job.id)));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    for (const id of this.running.keys()) this.lost.add(id);
    await this.ticking;
    await Promise.all(this.running.values());
  }

  private async run(stored: StoredJob): Promise<void> {
    const { deps } = this;
    const from = deps.planner.map;
    const opts = { known: deps.planner.shards, directory: deps.directory };
    const report = async (fields: Parameters<ReshardJobStore["report"]>[2]) => {
      if (!(await deps.jobs.report(stored.id, deps.router, fields).catch(() => true))) this.lost.add(stored.id);
    };
    if (stored.phase === "cutting_over" && (await this.finishCutover(stored, report))) return;
    if (from.version !== stored.fromVersion) {
      await report({ phase: "failed", error: `the shard map is version ${from.version}, not ${stored.fromVersion} as when the job was planned: start a new job` });
      return;
    }
    const to = shardMapOf({ version: from.version + 1, placement: stored.target.placement, shards: stored.target.shards }, opts);
    const primary = (s: string) => resharderNode(deps.config, deps.planner.shards, s);
    const job = new ReshardJob({
      job: stored.id, from, to, tables: stored.target.tables, keyMoves: stored.target.keyMoves, primary, connectTimeoutMs: deps.config.pool.connectTimeoutMs, log: deps.log,
    });
    const sources = new Map<string, postgres.Sql>(job.plans.map((p) => [p.source, nodeClient(primary(p.source), { max: 1, connectTimeoutMs: deps.config.pool.connectTimeoutMs })]));
    const behindSince = new Map<string, number>();
    let pastTheFence = false;
    let verified: StoredVerify | undefined = stored.verify && stored.verify.mismatches === 0 ? stored.verify : undefined;
    try {
      job.start();
      for (;;) {
        if (this.lost.has(stored.id)) {
          await job.stop();
          return;
        }
        const now = await deps.jobs.get(stored.id);
        if (!now) return;
        if (now.cancelRequested) {
          await job.cancel();
          await report({ phase: "cancelled" });
          return;
        }
        const status = job.status.sources;
        const progress: StoredSourceProgress[] = [];
        for (const [source, s] of Object.entries(status)) {
          const current = await sources.get(source)!.unsafe<{ lsn: string }[]>("select pg_current_wal_lsn()::text as lsn").catch(() => undefined);
          const lag = current ? parseLsn(current[0].lsn) - s.applied : 0n;
          const lagBytes = s.phase === "streaming" && lag > 0n ? Number(lag) : 0;
          // How long it has been behind: from the first look that found it behind, until one finds it caught up.
          if (lagBytes === 0) behindSince.delete(source);
          else if (!behindSince.has(source)) behindSince.set(source, Date.now());
          const tables: Record<string, number> = {};
          for (const perTarget of Object.values(s.copied)) for (const [table, n] of Object.entries(perTarget)) tables[table] = (tables[table] ?? 0) + n;
          progress.push({
            source, phase: s.phase, attempts: s.attempts, lagBytes, lagMs: lagBytes ? Date.now() - behindSince.get(source)! : 0,
            rowsCopied: Object.values(tables).reduce((a, b) => a + b, 0), tables,
            ...(s.error ? { error: s.error } : {}),
          });
        }
        const streaming = progress.every((p) => p.phase === "streaming");
        if (!streaming) {
          await report({ phase: "copying", progress });
          await sleep(200);
          continue;
        }
        if (!(await this.caughtUp(job, sources, 2000))) {
          await report({ phase: "catching_up", progress });
          continue;
        }
        if (!verified) {
          await report({ phase: "verifying", progress });
          verified = await this.verify(job, sources);
          if (verified.mismatches > 0) {
            await job.cancel();
            await report({ phase: "failed", verify: verified, error: `verify found ${verified.mismatches} row(s) that differ between source and target (e.g. ${verified.examples.join(", ")}): no cutover; the job's copies were removed` });
            return;
          }
        }
        await report({ phase: "ready", progress, verify: verified });
        if (!(now.autoCutover || now.cutoverRequested)) {
          await sleep(200);
          continue;
        }
        await report({ phase: "cutting_over" });
        // From here the new map may be committed: whatever fails, the job never cancels (that would
        // delete the new owners' rows); the next look settles the cutover from the catalog
        // (finishCutover) and finishes the clean-up, again and again until it succeeds.
        pastTheFence = true;
        try {
          const result = await job.cutOver({
            fences: deps.fences, maps: deps.maps, router: deps.router, to: { placement: stored.target.placement, shards: stored.target.shards },
            directoryEntries: stored.target.keyMoves && Object.fromEntries(Object.entries(stored.target.keyMoves).map(([key, m]) => [key, m.to])),
            timeoutMs: deps.config.resharding.cutoverTimeoutMs,
          });
          await report({
            toVersion: result.version,
            cutover: { fencedMs: result.fencedMs, acknowledged: result.acknowledged, unacknowledged: result.unacknowledged },
          });
        } catch (err) {
          if (!(err instanceof CutoverError)) throw err;
          await report({ phase: "ready", error: `cutover aborted, the sources serve on: ${err.message}` });
          await sleep(1000);
          continue;
        }
        await this.cleanUpAndFinish(job, stored, report);
        return;
      }
    } catch (err) {
      await job.stop().catch(() => {});
      if (pastTheFence) {
        await report({ error: `cutover or clean-up interrupted (${(err as Error).message}): settling it from the catalog and trying again` });
        throw err;
      }
      await report({ phase: "failed", error: (err as Error).message });
      await job.cancel().catch(() => {});
      throw err;
    } finally {
      await Promise.all([...sources.values()].map((c) => c.end({ timeout: 1 }).catch(() => {})));
    }
  }

  /**
   * Writes a marker on every source and waits up to `withinMs` for the streams to apply it: after
   * that the targets hold everything the sources had when the marker was written.
   */
  private async caughtUp(job: ReshardJob, sources: Map<string, postgres.Sql>, withinMs: number): Promise<boolean> {
    const markers = new Map<string, bigint>();
    for (const [name, sql] of sources) {
      const [{ lsn }] = await sql.unsafe<{ lsn: string }[]>("select pg_logical_emit_message(true, 'shardrouter', 'sync')::text as lsn");
      markers.set(name, parseLsn(lsn));
    }
    const deadline = Date.now() + withinMs;
    for (const [name, marker] of markers) {
      while ((job.status.sources[name]?.applied ?? 0n) < marker) {
        if (Date.now() > deadline) return false;
        await sleep(10);
      }
    }
    return true;
  }

  private async verify(job: ReshardJob, sources: Map<string, postgres.Sql>): Promise<StoredVerify> {
    const out: StoredVerify = { rowsCompared: 0, mismatches: 0, examples: [] };
    for (const plan of job.plans) {
      const results = await verifyMove(job.specFor(plan), { settle: async () => { await this.caughtUp(job, sources, 10_000); }, listAtMost: 5 });
      for (const r of results) {
        out.rowsCompared += r.compared;
        out.mismatches += r.counts.missing + r.counts.extra + r.counts.different;
        out.examples.push(...[...r.missing, ...r.extra, ...r.different].slice(0, 5 - out.examples.length));
      }
    }
    return out;
  }

  /** After a committed cutover: the sources' moved rows and slots go, then the job is done. */
  private async cleanUpAndFinish(job: ReshardJob, stored: StoredJob, report: (f: Parameters<ReshardJobStore["report"]>[2]) => Promise<void>, toVersion?: number): Promise<void> {
    await job.cleanUp();
    await this.deps.fences.remove(stored.id).catch(() => {});
    // The job it undoes first: whoever sees this one done sees that one reversed.
    if (stored.target.reverses) await this.deps.jobs.markReversed(stored.target.reverses);
    await report({ phase: "done", error: undefined, ...(toVersion !== undefined ? { toVersion } : {}) });
  }

  /**
   * A job whose runner died mid-cutover: if the new map was committed, the sources take only its
   * epoch from now on and the job cleans up; if not, the fence is aborted and the job goes on.
   * True when the job is finished.
   */
  private async finishCutover(stored: StoredJob, report: (f: Parameters<ReshardJobStore["report"]>[2]) => Promise<void>): Promise<boolean> {
    const { deps } = this;
    const fence = (await deps.fences.all()).find((f) => f.job === stored.id);
    const latest = await deps.maps.latest();
    const primary = (s: string) => resharderNode(deps.config, deps.planner.shards, s);
    if (fence?.state === "lifted" && latest && latest.version === stored.fromVersion + 1) {
      const before = await deps.maps.at(stored.fromVersion);
      const from = shardMapOf(before!, { known: deps.planner.shards, directory: deps.directory });
      const to = shardMapOf(latest, { known: deps.planner.shards, directory: deps.directory });
      const job = new ReshardJob({ job: stored.id, from, to, tables: stored.target.tables, keyMoves: stored.target.keyMoves, primary, connectTimeoutMs: deps.config.pool.connectTimeoutMs });
      for (const plan of job.plans) {
        const sql = nodeClient(primary(plan.source), { max: 1 });
        try { await setMinimumEpoch(sql, latest.epoch ?? 0); } finally { await sql.end({ timeout: 1 }); }
      }
      await this.cleanUpAndFinish(job, stored, report, latest.version);
      return true;
    }
    // Not committed: undo the fence; the sources' epoch goes back to the map in force.
    await deps.fences.abort(stored.id);
    const inForce = deps.planner.map;
    for (const shard of inForce.shards) {
      const sql = nodeClient(primary(shard.name), { max: 1 });
      try {
        const [{ present }] = await sql.unsafe<{ present: boolean }[]>("select to_regclass('shardrouter.map_epoch') is not null as present");
        if (present) await setMinimumEpoch(sql, inForce.epoch);
      } finally {
        await sql.end({ timeout: 1 });
      }
    }
    await report({ phase: "ready", error: "the router running the cutover stopped before it committed: it was aborted and will run again" });
    return false;
  }
}
