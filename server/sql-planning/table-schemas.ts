// The columns of the tables statements name, read from one shard's catalog (every shard holds the same
// schema: DDL goes to all of them). Routing needs a key column's type to place a key by its value
// ('0123' and 123 on an int8 column are one key); merge planning needs a table's columns to tell a
// GROUP BY alias from a column of that name.
//
// Cached per table for a bounded time (DDL through another router is seen after it), dropped when
// this router runs a schema change; a table that does not exist is not cached (it may be created
// next). A lookup of a cached table is a map read: the hot path stays synchronous.
import type { Planner } from "../execution/planner.js";
import { executeStatement, newBudget } from "../execution/shard-executor.js";
import { writerOf } from "../shards/shard-set.js";
import type { KeyColumnType } from "./key-canonical.js";

/** A table's columns by name, with their base types. */
export type TableColumns = ReadonlyMap<string, KeyColumnType>;

/** The columns of a table (by the name as to_regclass reads it) when known. */
export type ColumnsOf = (relation: string) => TableColumns | undefined;

/** Reads a table's columns; undefined when it does not exist. `relation`: the name as to_regclass reads it. */
export type ColumnsReader = (relation: string) => Promise<TableColumns | undefined>;

export const defaultSchemaLifetimeMs = 60_000;

export class TableSchemas {
  private readonly cache = new Map<string, { columns: TableColumns; expires: number }>();
  private readonly loading = new Map<string, Promise<TableColumns | undefined>>();
  /** Bumped by `invalidate`: a read that started before a schema change does not fill the cache. */
  private generation = 0;

  constructor(private readonly read: ColumnsReader, private readonly lifetimeMs = defaultSchemaLifetimeMs, private readonly now: () => number = Date.now) {}

  /** The cached columns of `relation`; undefined when not cached (never read, expired, or no such table). */
  cached(relation: string): TableColumns | undefined {
    const hit = this.cache.get(relation);
    if (!hit) return undefined;
    if (hit.expires > this.now()) return hit.columns;
    this.cache.delete(relation);
    return undefined;
  }

  /** The cached columns of `relation` without the lifetime check: for a call that just made it (`cached`). */
  peek(relation: string): TableColumns | undefined {
    return this.cache.get(relation)?.columns;
  }

  /** The columns of `relation`, read from the catalog when not cached (one read at a time per table). */
  load(relation: string): Promise<TableColumns | undefined> {
    const hit = this.cached(relation);
    if (hit) return Promise.resolve(hit);
    const pending = this.loading.get(relation);
    if (pending) return pending;
    const generation = this.generation;
    const read = this.read(relation).then((columns) => {
      if (columns && generation === this.generation) this.cache.set(relation, { columns, expires: this.now() + this.lifetimeMs });
      return columns;
    }).finally(() => {
      if (this.loading.get(relation) === read) this.loading.delete(relation);
    });
    this.loading.set(relation, read);
    return read;
  }

  /** Forgets every table: this router ran a schema change. */
  invalidate(): void {
    this.generation++;
    this.cache.clear();
    this.loading.clear();
  }

  get cachedTables(): number {
    return this.cache.size;
  }
}

// Base types: a domain's column is compared as its base type.
const columnsSql = `select a.attname::text, coalesce(nullif(t.typbasetype, 0), a.atttypid)::int8,
    format_type(coalesce(nullif(t.typbasetype, 0), a.atttypid), null)
  from pg_attribute a join pg_type t on t.oid = a.atttypid
  where a.attrelid = to_regclass($1) and a.attnum > 0 and not a.attisdropped`;

/**
 * Reads columns from the primary of the shard map's shards, the first that answers (every shard
 * has the schema). A table with no columns read is taken as absent.
 */
export function catalogColumns(planner: Planner, timeoutMs = 10_000): ColumnsReader {
  return async (relation) => {
    let failure: unknown;
    for (const s of planner.map.shards) {
      try {
        const result = await executeStatement({
          shard: s.name, pool: writerOf(planner.shards.shard(s.name)), sql: columnsSql, params: [{ text: relation, oid: 25 }],
          signal: AbortSignal.timeout(timeoutMs), budget: newBudget(100_000, 64 << 20),
        });
        if (result.rows.length === 0) return undefined;
        return new Map(result.rows.map((r) => {
          const [name, oid, type] = r.values.map((v) => String(v.kind.value));
          return [name, { name: type, oid: Number(oid) }];
        }));
      } catch (err) {
        failure = err;
      }
    }
    throw failure;
  };
}

/** `schema.table` or `table` as to_regclass reads it: each name quoted, so case and dots stay. */
export function relationName(schema: string | undefined, table: string): string {
  const quote = (s: string) => `"${s.replace(/"/g, '""')}"`;
  return schema ? `${quote(schema)}.${quote(table)}` : quote(table);
}
