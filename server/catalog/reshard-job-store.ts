// Resharding jobs in the catalog: what each job moves (its target map), where it stands, and which
// router runs it. A router runs a job only while it holds the job's lease, and renews it as it goes;
// when that router dies the lease runs out and another router (or the same one, restarted) takes
// the job over, resuming from what the nodes hold (slots, targets' progress).
import type { PlacementConfig } from "../placement/placement-config.js";
import type { Catalog } from "./catalog.js";
import type { StoredShard } from "./shard-map-store.js";

export type JobPhase = "copying" | "catching_up" | "verifying" | "ready" | "cutting_over" | "done" | "failed" | "cancelled" | "reversed";

/** Phases a router keeps working on; the others are final. */
export const activePhases: readonly JobPhase[] = ["copying", "catching_up", "verifying", "ready", "cutting_over"];

export interface JobTarget {
  placement: PlacementConfig;
  shards: StoredShard[];
  tables: { name: string; keyColumn: string }[];
  /** A reverse job: the done job it undoes (marked reversed when this one is done). */
  reverses?: string;
  /** Directory maps: the keys that move, each with its owner when planned and its new one. */
  keyMoves?: Record<string, { from: string; to: string }>;
}

export interface StoredMove {
  source: string; target: string; estimatedRows: number;
  /** The same count per table (jobs planned before it have none). */
  tables?: Record<string, number>;
}
export interface StoredSourceProgress {
  source: string; phase: string; rowsCopied: number; lagBytes: number; attempts: number; error?: string;
  /** How long the stream has been behind, in ms (0: caught up). */
  lagMs?: number;
  /** Rows copied per table, all targets together. */
  tables?: Record<string, number>;
}
export interface StoredVerify { rowsCompared: number; mismatches: number; examples: string[] }
export interface StoredCutover { fencedMs: number; acknowledged: string[]; unacknowledged: string[] }

export interface StoredJob {
  id: string;
  fromVersion: number;
  target: JobTarget;
  autoCutover: boolean;
  cutoverRequested: boolean;
  cancelRequested: boolean;
  phase: JobPhase;
  error?: string;
  moves: StoredMove[];
  progress?: StoredSourceProgress[];
  verify?: StoredVerify;
  cutover?: StoredCutover;
  toVersion?: number;
  leaseOwner?: string;
}

type Row = {
  id: string; from_version: string; target: JobTarget; auto_cutover: boolean; cutover_requested: boolean; cancel_requested: boolean;
  phase: JobPhase; error: string | null; moves: StoredMove[]; progress: StoredSourceProgress[] | null; verify: StoredVerify | null;
  cutover: StoredCutover | null; to_version: string | null; lease_owner: string | null;
};

const columns = "id, from_version::text, target, auto_cutover, cutover_requested, cancel_requested, phase, error, moves, progress, verify, cutover, to_version::text, lease_owner";

function fromRow(r: Row): StoredJob {
  return {
    id: r.id, fromVersion: Number(r.from_version), target: r.target, autoCutover: r.auto_cutover,
    cutoverRequested: r.cutover_requested, cancelRequested: r.cancel_requested, phase: r.phase, moves: r.moves,
    ...(r.error === null ? {} : { error: r.error }),
    ...(r.progress === null ? {} : { progress: r.progress }),
    ...(r.verify === null ? {} : { verify: r.verify }),
    ...(r.cutover === null ? {} : { cutover: r.cutover }),
    ...(r.to_version === null ? {} : { toVersion: Number(r.to_version) }),
    ...(r.lease_owner === null ? {} : { leaseOwner: r.lease_owner }),
  };
}

export class ReshardJobStore {
  constructor(private readonly catalog: Catalog) {}

  /** Records a new job; false when the id is taken or another job is still active (one at a time). */
  async create(job: Pick<StoredJob, "id" | "fromVersion" | "target" | "autoCutover" | "moves">): Promise<"created" | "exists" | "busy"> {
    return this.catalog.sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(hashtext('shardrouter.reshard_jobs'))`;
      const [taken] = await tx`select 1 from shardrouter.reshard_jobs where id = ${job.id}`;
      if (taken) return "exists";
      const [active] = await tx`select 1 from shardrouter.reshard_jobs where phase in ${tx(activePhases as JobPhase[])}`;
      if (active) return "busy";
      await tx`insert into shardrouter.reshard_jobs (id, from_version, target, auto_cutover, phase, moves)
               values (${job.id}, ${job.fromVersion}, ${tx.json(job.target as never)}, ${job.autoCutover}, 'copying', ${tx.json(job.moves as never)})`;
      return "created";
    });
  }

  async get(id: string): Promise<StoredJob | undefined> {
    const [row] = await this.catalog.sql<Row[]>`select ${this.catalog.sql.unsafe(columns)} from shardrouter.reshard_jobs where id = ${id}`;
    return row && fromRow(row);
  }

  async list(): Promise<StoredJob[]> {
    const rows = await this.catalog.sql<Row[]>`select ${this.catalog.sql.unsafe(columns)} from shardrouter.reshard_jobs order by created_at desc`;
    return rows.map(fromRow);
  }

  /**
   * Takes (or renews) the lease of every active job that is free or already this router's; returns
   * the jobs this router now runs.
   */
  async claim(router: string, leaseMs: number): Promise<StoredJob[]> {
    const rows = await this.catalog.sql<Row[]>`
      update shardrouter.reshard_jobs set lease_owner = ${router}, lease_until = now() + make_interval(secs => ${leaseMs / 1000})
       where phase in ${this.catalog.sql(activePhases as JobPhase[])}
         and (lease_owner is null or lease_owner = ${router} or lease_until < now())
      returning ${this.catalog.sql.unsafe(columns)}`;
    return rows.map(fromRow);
  }

  /** Writes what a runner learnt, only while it holds the lease; false when it lost it. */
  async report(id: string, router: string, fields: Partial<Pick<StoredJob, "phase" | "error" | "progress" | "verify" | "cutover" | "toVersion">>): Promise<boolean> {
    const sql = this.catalog.sql;
    const rows = await sql`
      update shardrouter.reshard_jobs set
        phase = coalesce(${fields.phase ?? null}, phase),
        error = ${"error" in fields ? (fields.error ?? null) : sql`error`},
        progress = coalesce(${fields.progress ? sql.json(fields.progress as never) : null}, progress),
        verify = coalesce(${fields.verify ? sql.json(fields.verify as never) : null}, verify),
        cutover = coalesce(${fields.cutover ? sql.json(fields.cutover as never) : null}, cutover),
        to_version = coalesce(${fields.toVersion ?? null}, to_version),
        lease_owner = case when ${fields.phase ?? ""} in ('done', 'failed', 'cancelled') then null else lease_owner end,
        updated_at = now()
       where id = ${id} and lease_owner = ${router}
      returning 1`;
    return rows.length > 0;
  }

  /** The jobs still at work: their ids and the shards of the map each moves to. */
  async active(): Promise<{ id: string; shards: StoredShard[] }[]> {
    const rows = await this.catalog.sql<{ id: string; target: JobTarget }[]>`
      select id, target from shardrouter.reshard_jobs where phase in ${this.catalog.sql(activePhases as JobPhase[])}`;
    return rows.map((r) => ({ id: r.id, shards: r.target.shards }));
  }

  /** A done job whose reverse job is done too. */
  async markReversed(id: string): Promise<void> {
    await this.catalog.sql`update shardrouter.reshard_jobs set phase = 'reversed', updated_at = now() where id = ${id} and phase = 'done'`;
  }

  /** Asks for the cutover (the runner does it once ready); false for a job that is not active. */
  async requestCutover(id: string): Promise<boolean> {
    const rows = await this.catalog.sql`update shardrouter.reshard_jobs set cutover_requested = true, updated_at = now()
      where id = ${id} and phase in ${this.catalog.sql(activePhases as JobPhase[])} returning 1`;
    return rows.length > 0;
  }

  /** Asks for a cancel; false for a job past its cutover or already final. */
  async requestCancel(id: string): Promise<boolean> {
    const rows = await this.catalog.sql`update shardrouter.reshard_jobs set cancel_requested = true, updated_at = now()
      where id = ${id} and phase in ('copying', 'catching_up', 'verifying', 'ready') returning 1`;
    return rows.length > 0;
  }
}
