// The stream phase's writer: applies one source's changes to the targets that own the keys, one
// target transaction per source transaction, idempotently (upsert or delete by primary key), and
// records in that same target transaction how far it got (shardrouter.reshard_progress). A router that
// dies mid-stream resumes from what each target recorded: nothing is lost, nothing applied twice.
import type postgres from "postgres";
import { type Lsn, formatLsn, parseLsn } from "./lsn.js";
import { type Cell, type Change, type Relation, unchanged } from "./pgoutput.js";
import { type TableShape, quoteIdent } from "./table-schema.js";

export const progressTable = "shardrouter.reshard_progress";

/** Creates the progress table on a target (idempotent). */
export async function ensureProgressTable(sql: postgres.Sql): Promise<void> {
  await sql.unsafe("create schema if not exists shardrouter");
  await sql.unsafe(`create table if not exists ${progressTable} (
    job text not null, source text not null, lsn pg_lsn not null, updated_at timestamptz not null default now(),
    primary key (job, source))`);
}

/** Where the stream of (job, source) stands on a target: undefined before its copy committed. */
export async function readProgress(sql: postgres.Sql | postgres.ReservedSql, job: string, source: string): Promise<Lsn | undefined> {
  const rows = await sql.unsafe<{ lsn: string }[]>(`select lsn::text as lsn from ${progressTable} where job = $1 and source = $2`, [job, source]);
  return rows.length ? parseLsn(rows[0].lsn) : undefined;
}

export async function writeProgress(sql: postgres.ReservedSql, job: string, source: string, lsn: Lsn): Promise<void> {
  await sql.unsafe(
    `insert into ${progressTable} (job, source, lsn) values ($1, $2, $3::text::pg_lsn)
       on conflict (job, source) do update set lsn = excluded.lsn, updated_at = now()`,
    [job, source, formatLsn(lsn)],
  );
}

/** A target of one source's stream: a connection of its own for the stream's length, and how far it has applied. */
export interface ApplierTarget { conn: postgres.ReservedSql; applied: Lsn }

export class ChangeApplier {
  private readonly byRelation = new Map<number, TableShape | null>();
  /** Targets with statements in the current source transaction, and those statements' promises. */
  private open = new Map<string, Promise<unknown>[]>();
  private finalLsn: Lsn = 0n;
  /** The end of the last source transaction every target has (applied, or had nothing to apply). */
  appliedThrough: Lsn;

  constructor(
    private readonly job: string,
    private readonly source: string,
    private readonly sourceSql: postgres.Sql,
    private readonly tables: ReadonlyMap<string, TableShape>,
    private readonly destination: (key: string) => string | undefined,
    private readonly targets: ReadonlyMap<string, ApplierTarget>,
  ) {
    const applied = [...targets.values()].map((t) => t.applied);
    this.appliedThrough = applied.reduce((min, a) => (a < min ? a : min), applied[0] ?? 0n);
  }

  /** No source transaction is half applied. */
  get idle(): boolean { return !this.inTransaction; }
  private inTransaction = false;

  /** Applies one decoded message; after a commit, returns the position now safe to acknowledge. */
  async apply(change: Change): Promise<Lsn | undefined> {
    switch (change.tag) {
      case "begin":
        this.inTransaction = true;
        this.finalLsn = change.finalLsn;
        return undefined;
      case "relation": {
        const { schema, name, oid } = change.relation;
        this.byRelation.set(oid, this.tables.get(`${schema}.${name}`) ?? (schema === "public" ? this.tables.get(name) : undefined) ?? null);
        return undefined;
      }
      case "insert": {
        const shape = this.shape(change.relation);
        if (shape) this.upsert(shape, change.row);
        return undefined;
      }
      case "update": {
        const shape = this.shape(change.relation);
        if (!shape) return undefined;
        if (change.old) this.remove(shape, change.old); // the primary key (so maybe the owner) changed
        await this.update(shape, change.row);
        return undefined;
      }
      case "delete": {
        const shape = this.shape(change.relation);
        if (shape) this.remove(shape, change.old);
        return undefined;
      }
      case "truncate": {
        const moving = change.relations.map((r) => this.shape(r)).filter((s): s is TableShape => !!s);
        if (moving.length) throw new Error(`TRUNCATE of ${moving.map((s) => s.name).join(", ")} on ${this.source} during a reshard: the job cannot carry it`);
        return undefined;
      }
      case "commit":
        await this.commit(change.endLsn);
        this.inTransaction = false;
        return this.appliedThrough;
      default:
        return undefined;
    }
  }

  /** Rolls back what a broken stream left open (the source sends that transaction again). */
  async abort(): Promise<void> {
    const open = [...this.open.entries()];
    this.open = new Map();
    await Promise.all(open.map(async ([target, pending]) => {
      await Promise.allSettled(pending);
      await this.targets.get(target)!.conn.unsafe("rollback").catch(() => {});
    }));
  }

  private shape(relation: Relation): TableShape | undefined {
    return this.byRelation.get(relation.oid) ?? undefined;
  }

  /** Sends a statement to `target` in the current source transaction (BEGIN first); awaited at commit. */
  private send(target: string, text: string, params: Cell[]): Promise<postgres.RowList<postgres.Row[]>> | undefined {
    const t = this.targets.get(target);
    if (!t) throw new Error(`a change on ${this.source} belongs to ${target}, which is not a target of this job`);
    if (this.finalLsn < t.applied) return undefined; // applied before a restart
    let pending = this.open.get(target);
    if (!pending) {
      pending = [t.conn.unsafe("begin")];
      this.open.set(target, pending);
    }
    const p = t.conn.unsafe(text, params as never[], { prepare: true });
    p.catch(() => {}); // awaited at commit
    pending.push(p);
    return p;
  }

  private upsert(shape: TableShape, row: Cell[]): void {
    const target = this.destination(String(row[shape.keyIndex]));
    if (target !== undefined) this.send(target, statementTexts(shape).upsert, row);
  }

  private remove(shape: TableShape, old: Cell[]): void {
    const target = this.destination(String(old[shape.keyIndex]));
    if (target !== undefined) this.send(target, statementTexts(shape).delete, shape.primaryKeyIndexes.map((i) => old[i]));
  }

  /** An UPDATE: the whole row when Postgres sent it all; otherwise only the changed columns (TOAST). */
  private async update(shape: TableShape, row: Cell[]): Promise<void> {
    const target = this.destination(String(row[shape.keyIndex]));
    if (target === undefined) return;
    if (!row.includes(unchanged)) {
      this.send(target, statementTexts(shape).upsert, row);
      return;
    }
    const changed = row.map((_, i) => i).filter((i) => row[i] !== unchanged);
    const { text, params } = partialUpdate(shape, row, changed);
    const result = await this.send(target, text, params);
    if (result && result.count === 0) {
      // The row entered the moving keys with this update, so the target lacks its untouched values:
      // take the row as the source has it now; later changes in the stream end in the same state.
      const key = shape.primaryKeyIndexes.map((i) => row[i]);
      const select = `select ${shape.columns.map((c) => `${quoteIdent(c.name)}::text`).join(", ")} from ${shape.qualified} where ${pkMatch(shape)}`;
      const [current] = await this.sourceSql.unsafe(select, key as never[]).values();
      if (current) this.send(target, statementTexts(shape).upsert, current as Cell[]);
    }
  }

  private async commit(endLsn: Lsn): Promise<void> {
    const open = [...this.open.entries()];
    this.open = new Map();
    await Promise.all(open.map(async ([target, pending]) => {
      const conn = this.targets.get(target)!.conn;
      try {
        await Promise.all(pending);
        await writeProgress(conn, this.job, this.source, endLsn);
        const done = await conn.unsafe("commit");
        // In an aborted transaction Postgres answers COMMIT with the tag ROLLBACK and no error.
        if (done.command !== "COMMIT") throw new Error(`the apply transaction on ${target} rolled back`);
        this.targets.get(target)!.applied = endLsn;
      } catch (err) {
        await conn.unsafe("rollback").catch(() => {});
        throw err;
      }
    }));
    if (endLsn > this.appliedThrough) this.appliedThrough = endLsn;
  }
}

const texts = new WeakMap<TableShape, { upsert: string; delete: string }>();

function statementTexts(shape: TableShape): { upsert: string; delete: string } {
  let t = texts.get(shape);
  if (!t) {
    const cols = shape.columns.map((c) => quoteIdent(c.name));
    const values = shape.columns.map((c, i) => `$${i + 1}::text::${c.type}`);
    const others = shape.columns.filter((c) => !shape.primaryKey.includes(c.name)).map((c) => `${quoteIdent(c.name)} = excluded.${quoteIdent(c.name)}`);
    const conflict = `on conflict (${shape.primaryKey.map(quoteIdent).join(", ")}) ${others.length ? `do update set ${others.join(", ")}` : "do nothing"}`;
    t = {
      upsert: `insert into ${shape.qualified} (${cols.join(", ")}) values (${values.join(", ")}) ${conflict}`,
      delete: `delete from ${shape.qualified} where ${pkMatch(shape)}`,
    };
    texts.set(shape, t);
  }
  return t;
}

function pkMatch(shape: TableShape, from = 1): string {
  return shape.primaryKey.map((k, i) => `${quoteIdent(k)} = $${i + from}::text::${shape.columns[shape.primaryKeyIndexes[i]].type}`).join(" and ");
}

function partialUpdate(shape: TableShape, row: Cell[], changed: number[]): { text: string; params: Cell[] } {
  const sets = changed.map((i, n) => `${quoteIdent(shape.columns[i].name)} = $${n + 1}::text::${shape.columns[i].type}`);
  return {
    text: `update ${shape.qualified} set ${sets.join(", ")} where ${pkMatch(shape, changed.length + 1)}`,
    params: [...changed.map((i) => row[i]), ...shape.primaryKeyIndexes.map((i) => row[i])],
  };
}
