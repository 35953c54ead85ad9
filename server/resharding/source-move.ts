// One source shard's part of a reshard job: the rows whose keys now belong elsewhere are copied at a
// snapshot to their new owners, then every later change to them is streamed there, until stopped.
// Durable state lives where it must survive the router: the slot on the source (it keeps the WAL the
// targets still need) and, on each target, how far that target has applied (change-applier.ts).
// So run() after a crash picks up where the targets say it stopped; a copy that did not commit on
// every target is cleared and done again.
import type postgres from "postgres";
import type { NodeConfig } from "../shards/node-pool.js";
import { type ApplierTarget, ChangeApplier, ensureProgressTable, progressTable, readProgress, writeProgress } from "./change-applier.js";
import type { Lsn } from "./lsn.js";
import { type ChangeStream, ReplicationConnection, assertSafeName } from "./replication-stream.js";
import { nodeClient } from "./node-client.js";
import { copyTable } from "./row-copier.js";
import { type ShardedTable, type TableShape, assertSameShape, deleteByKeys, readTableShape, shardKeys } from "./table-schema.js";

export interface ShardNode { name: string; node: NodeConfig }

export interface SourceMoveSpec {
  /** The job's id: lower-case letters, digits and '_' (it names the slot and the publication). */
  job: string;
  source: ShardNode;
  targets: ShardNode[];
  tables: ShardedTable[];
  /** The target that now owns `key`, or undefined when the key stays on the source. */
  destination(key: string): string | undefined;
  /** `key` is this source's under the map in force: a target's other rows are none of this move's business. */
  fromSource(key: string): boolean;
  connectTimeoutMs?: number;
  /** How long a copy waits for prepared two-phase transactions on the source to be settled (default 10 s). */
  settlePreparedWithinMs?: number;
}

export type SourceMovePhase = "starting" | "copying" | "streaming" | "stopped" | "failed";

export interface SourceMoveStatus {
  phase: SourceMovePhase;
  /** Rows copied per target and table, e.g. {"shard-5": {"accounts": 2013}}. */
  copied: Record<string, Record<string, number>>;
  /** The source position every target has applied through. */
  applied: Lsn;
  error?: string;
}

export function slotName(job: string, source: string): string {
  return assertSafeName(`shardrouter_${job}_${source.toLowerCase().replace(/[^a-z0-9]/g, "_")}`.slice(0, 63));
}

export function publicationName(job: string): string {
  return assertSafeName(`shardrouter_${job}`);
}

export class SourceMove {
  readonly status: SourceMoveStatus = { phase: "starting", copied: {}, applied: 0n };
  private stream: ChangeStream | undefined;
  private stopping = false;
  private readonly clients: postgres.Sql[] = [];

  constructor(private readonly spec: SourceMoveSpec) {
    assertSafeName(spec.job);
  }

  /** Copies if needed, then streams until stop(); rejects with what broke it (the slot stays). */
  async run(): Promise<void> {
    const { spec } = this;
    const timeout = spec.connectTimeoutMs ?? 5000;
    const source = this.client(spec.source.node, 4);
    const targets = new Map(spec.targets.map((t) => [t.name, this.client(t.node, 2)]));
    const repl = new ReplicationConnection(spec.source.node, timeout);
    this.clients.push(repl.sql);
    try {
      const shapes = await this.shapes(source, targets);
      const slot = slotName(spec.job, spec.source.name);
      const publication = publicationName(spec.job);
      await ensurePublication(source, publication, [...shapes.values()]);
      for (const sql of targets.values()) await ensureProgressTable(sql);
      let applied = await this.progress(targets);
      const slotExists = await hasSlot(source, slot);
      if (!applied || !slotExists) {
        this.status.phase = "copying";
        await this.clearTargets(targets, [...shapes.values()]);
        if (slotExists) await dropSlot(source, slot);
        await settlePreparedTransactions(source, spec.source.name, spec.settlePreparedWithinMs);
        const created = await repl.createSlot(slot);
        await this.copy(source, targets, [...shapes.values()], created.snapshot, created.consistentPoint);
        applied = new Map([...targets.keys()].map((t) => [t, created.consistentPoint]));
      }
      if (this.stopping) return;
      this.status.phase = "streaming";
      const applierTargets = new Map<string, ApplierTarget>();
      for (const [name, sql] of targets) applierTargets.set(name, { conn: await sql.reserve(), applied: applied.get(name)! });
      const applier = new ChangeApplier(spec.job, spec.source.name, source, shapes, spec.destination, applierTargets);
      this.status.applied = applier.appliedThrough;
      const stream = await repl.start(slot, publication, applier.appliedThrough, async (change) => {
        const through = await applier.apply(change);
        if (through !== undefined) {
          this.status.applied = through;
          this.stream?.acknowledge(through);
        }
      }, () => applier.idle);
      this.stream = stream;
      if (this.stopping) await stream.stop(); // stop() came while the stream was starting
      try {
        await stream.ended;
      } finally {
        await applier.abort();
        for (const t of applierTargets.values()) t.conn.release();
      }
      this.status.phase = "stopped";
    } catch (err) {
      if (this.stopping) {
        this.status.phase = "stopped";
        return;
      }
      this.status.phase = "failed";
      this.status.error = (err as Error).message;
      throw err;
    } finally {
      await Promise.all(this.clients.splice(0).map((c) => c.end({ timeout: 1 }).catch(() => {})));
    }
  }

  /** Stops streaming; the slot and the targets' progress stay, so run() resumes. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.stream?.stop();
  }

  private client(node: NodeConfig, max: number): postgres.Sql {
    const sql = nodeClient(node, { max, connectTimeoutMs: this.spec.connectTimeoutMs });
    this.clients.push(sql);
    return sql;
  }

  private async shapes(source: postgres.Sql, targets: Map<string, postgres.Sql>): Promise<Map<string, TableShape>> {
    const shapes = new Map<string, TableShape>();
    for (const table of this.spec.tables) {
      const shape = await readTableShape(source, table, this.spec.source.name);
      for (const [name, sql] of targets) assertSameShape(shape, await readTableShape(sql, table, name), name);
      shapes.set(table.name, shape);
    }
    return shapes;
  }

  /** Each target's applied position, or undefined unless every target committed its copy. */
  private async progress(targets: Map<string, postgres.Sql>): Promise<Map<string, Lsn> | undefined> {
    const out = new Map<string, Lsn>();
    for (const [name, sql] of targets) {
      const lsn = await readProgress(sql, this.spec.job, this.spec.source.name);
      if (lsn === undefined) return undefined;
      out.set(name, lsn);
    }
    return out;
  }

  /** Removes what an earlier, unfinished copy of this source left on the targets. */
  private async clearTargets(targets: Map<string, postgres.Sql>, shapes: TableShape[]): Promise<void> {
    for (const [name, sql] of targets) {
      if ((await readProgress(sql, this.spec.job, this.spec.source.name)) === undefined) continue;
      await clearCopied(sql, name, this.spec, shapes);
    }
  }

  private async copy(source: postgres.Sql, targets: Map<string, postgres.Sql>, shapes: TableShape[], snapshot: string, at: Lsn): Promise<void> {
    const reader = await source.reserve();
    const writers = new Map<string, postgres.ReservedSql>();
    try {
      await reader.unsafe("begin isolation level repeatable read read only");
      await reader.unsafe(`set transaction snapshot '${snapshot.replace(/[^0-9A-Za-z-]/g, "")}'`);
      for (const [name, sql] of targets) {
        const conn = await sql.reserve();
        writers.set(name, conn);
        await conn.unsafe("begin");
      }
      for (const shape of shapes) {
        const copied = await copyTable(reader, shape, this.spec.destination, writers);
        for (const [target, n] of copied) (this.status.copied[target] ??= {})[shape.name] = n;
      }
      // Each target's copy and its starting position commit together.
      for (const [name, conn] of writers) {
        await writeProgress(conn, this.spec.job, this.spec.source.name, at);
        const done = await conn.unsafe("commit");
        if (done.command !== "COMMIT") throw new Error(`the copy on ${name} rolled back`);
      }
      await reader.unsafe("commit");
    } catch (err) {
      for (const conn of [reader, ...writers.values()]) await conn.unsafe("rollback").catch(() => {});
      throw err;
    } finally {
      reader.release();
      for (const conn of writers.values()) conn.release();
    }
  }
}

/**
 * Deletes from one target the rows that came (or would come) from this source, and its progress
 * row: the rows whose keys this source gives to that target. A primary key holds the shard key, so
 * these rows cannot be any other source's.
 */
async function clearCopied(sql: postgres.Sql, target: string, spec: SourceMoveSpec, shapes: TableShape[]): Promise<number> {
  let deleted = 0;
  await sql.begin(async (tx) => {
    for (const shape of shapes) {
      const mine = (await shardKeys(tx, shape)).filter((k) => spec.fromSource(k) && spec.destination(k) === target);
      await deleteByKeys(tx, shape, mine);
      deleted += mine.length;
    }
    await tx.unsafe(`delete from ${progressTable} where job = $1 and source = $2`, [spec.job, spec.source.name]);
  });
  return deleted;
}

/**
 * Undoes one source's part of a job that will not cut over (cancel): the rows copied to its
 * targets, their progress rows, the slot and the publication. The source itself is untouched.
 */
export async function cancelSourceMove(spec: SourceMoveSpec): Promise<void> {
  const source = nodeClient(spec.source.node, { connectTimeoutMs: spec.connectTimeoutMs });
  try {
    const shapes: TableShape[] = [];
    for (const table of spec.tables) shapes.push(await readTableShape(source, table, spec.source.name));
    for (const t of spec.targets) {
      const sql = nodeClient(t.node, { connectTimeoutMs: spec.connectTimeoutMs });
      try {
        await ensureProgressTable(sql);
        await clearCopied(sql, t.name, spec, shapes);
      } finally {
        await sql.end({ timeout: 1 });
      }
    }
  } finally {
    await source.end({ timeout: 1 });
  }
  await cleanUpSource(spec.source.node, spec.job, spec.source.name);
}

/**
 * Creating a slot waits for every transaction in progress, prepared ones included, and an in-doubt
 * two-phase transaction can stay prepared until recovery settles it. So wait, for a bounded time, for
 * the prepared transactions there now to be settled (a live coordinator's take milliseconds), and
 * fail otherwise: the job runs this source again later, rather than wait without a bound.
 */
async function settlePreparedTransactions(sql: postgres.Sql, source: string, withinMs = 10_000): Promise<void> {
  const list = async () => (await sql.unsafe<{ gid: string }[]>("select gid from pg_prepared_xacts where database = current_database()")).map((r) => r.gid);
  let waiting = new Set(await list());
  const deadline = Date.now() + withinMs;
  while (waiting.size > 0) {
    if (Date.now() > deadline) {
      throw new Error(`${waiting.size} prepared transaction(s) on ${source} must be settled (committed or rolled back by recovery) before its copy can start`);
    }
    await new Promise((r) => setTimeout(r, 20));
    const now = new Set(await list());
    waiting = new Set([...waiting].filter((g) => now.has(g)));
  }
}

async function hasSlot(sql: postgres.Sql, slot: string): Promise<boolean> {
  const rows = await sql.unsafe("select 1 from pg_replication_slots where slot_name = $1", [slot]);
  return rows.length > 0;
}

/** Drops a slot, ending the walsender that still holds it (a stream of a router that died). */
export async function dropSlot(sql: postgres.Sql, slot: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const [row] = await sql.unsafe<{ pid: number | null }[]>("select active_pid as pid from pg_replication_slots where slot_name = $1", [slot]);
    if (!row) return;
    if (row.pid !== null) await sql.unsafe("select pg_terminate_backend($1)", [row.pid]);
    try {
      await sql.unsafe("select pg_drop_replication_slot($1)", [slot]);
      return;
    } catch (err) {
      // 55006: still active (the walsender is exiting): try again, a bounded number of times.
      if ((err as { code?: string }).code !== "55006" || attempt >= 50) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function ensurePublication(sql: postgres.Sql, publication: string, shapes: TableShape[]): Promise<void> {
  const rows = await sql.unsafe("select 1 from pg_publication where pubname = $1", [publication]);
  if (rows.length === 0) await sql.unsafe(`create publication ${publication} for table ${shapes.map((s) => s.qualified).join(", ")}`);
}

/** Everything a job left on a source: its slot and publication (cancel, completion, failure). */
export async function cleanUpSource(node: NodeConfig, job: string, source: string): Promise<void> {
  const sql = nodeClient(node);
  try {
    await dropSlot(sql, slotName(job, source));
    await sql.unsafe(`drop publication if exists ${publicationName(job)}`);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/**
 * After the cutover: deletes from the source the rows whose keys now belong to other shards (they
 * are stale copies there, and a scatter read would count them twice), in batches of their own
 * transactions so no lock is held long; and the job's progress rows on the targets.
 */
export async function deleteMovedRows(spec: SourceMoveSpec, batch = 1000): Promise<number> {
  const sql = nodeClient(spec.source.node, { connectTimeoutMs: spec.connectTimeoutMs });
  let deleted = 0;
  try {
    for (const table of spec.tables) {
      const shape = await readTableShape(sql, table, spec.source.name);
      const moved = (await shardKeys(sql, shape)).filter((k) => spec.destination(k) !== undefined);
      deleted += await deleteByKeys(sql, shape, moved, batch);
    }
  } finally {
    await sql.end({ timeout: 1 });
  }
  for (const t of spec.targets) {
    const target = nodeClient(t.node, { connectTimeoutMs: spec.connectTimeoutMs });
    try {
      await ensureProgressTable(target);
      await target.unsafe(`delete from ${progressTable} where job = $1 and source = $2`, [spec.job, spec.source.name]);
    } finally {
      await target.end({ timeout: 1 });
    }
  }
  return deleted;
}
