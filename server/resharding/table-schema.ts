// What the resharder must know of a sharded table on a node, read from the node's catalog: its
// columns in order, its primary key, and where its shard key column sits. A table moves only when its
// primary key contains the shard key column: then a primary key names one row in the whole keyspace,
// so a change can be applied, or a row deleted, by primary key on any shard without touching another
// shard's row that happens to share its id.
import type postgres from "postgres";

export interface ShardedTable { name: string; keyColumn: string }

export interface TableShape {
  /** `"schema"."name"`, quoted for SQL. */
  qualified: string;
  name: string;
  columns: { name: string; type: string }[];
  primaryKey: string[];
  /** Index of the shard key column in `columns`. */
  keyIndex: number;
  /** Indexes of the primary key columns in `columns`. */
  primaryKeyIndexes: number[];
}

export class TableShapeError extends Error {}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export async function readTableShape(sql: postgres.Sql, table: ShardedTable, where: string): Promise<TableShape> {
  const [schema, name] = table.name.includes(".") ? table.name.split(".", 2) : ["public", table.name];
  const columns = await sql.unsafe<{ name: string; type: string; pk: boolean }[]>(
    `select a.attname as name, format_type(a.atttypid, a.atttypmod) as type,
            coalesce(a.attnum = any(i.indkey), false) as pk
       from pg_attribute a
       join pg_class c on c.oid = a.attrelid
       join pg_namespace n on n.oid = c.relnamespace
       left join pg_index i on i.indrelid = c.oid and i.indisprimary
      where n.nspname = $1 and c.relname = $2 and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
      order by a.attnum`,
    [schema, name],
  );
  if (columns.length === 0) throw new TableShapeError(`table ${table.name} does not exist on ${where}`);
  const primaryKey = columns.filter((c) => c.pk).map((c) => c.name);
  if (primaryKey.length === 0) throw new TableShapeError(`table ${table.name} on ${where} has no primary key: a sharded table needs one to be moved`);
  const keyIndex = columns.findIndex((c) => c.name === table.keyColumn);
  if (keyIndex < 0) throw new TableShapeError(`table ${table.name} on ${where} has no column ${table.keyColumn} (its shard key)`);
  if (!primaryKey.includes(table.keyColumn)) {
    throw new TableShapeError(`the primary key of ${table.name} on ${where} (${primaryKey.join(", ")}) does not contain its shard key ${table.keyColumn}`);
  }
  return {
    qualified: `${quoteIdent(schema)}.${quoteIdent(name)}`,
    name: table.name,
    columns: columns.map((c) => ({ name: c.name, type: c.type })),
    primaryKey,
    keyIndex,
    primaryKeyIndexes: primaryKey.map((k) => columns.findIndex((c) => c.name === k)),
  };
}

/** The target must have the same columns, types and primary key (schema is not copied for you). */
export function assertSameShape(source: TableShape, target: TableShape, targetName: string): void {
  const describe = (t: TableShape) => `${t.columns.map((c) => `${c.name} ${c.type}`).join(", ")}; primary key (${t.primaryKey.join(", ")})`;
  if (describe(source) !== describe(target)) {
    throw new TableShapeError(`table ${source.name} differs on ${targetName}: source has (${describe(source)}), target has (${describe(target)})`);
  }
}

type Queryable = Pick<postgres.Sql, "unsafe">;

/** Every row's shard key, as text (the router places keys itself: murmur3 is not in SQL). */
export async function shardKeys(sql: Queryable, shape: TableShape): Promise<string[]> {
  const key = quoteIdent(shape.columns[shape.keyIndex].name);
  return (await sql.unsafe<{ k: string }[]>(`select ${key}::text as k from ${shape.qualified}`)).map((r) => r.k);
}

/** Deletes the rows with these shard keys, `batch` keys per statement; returns the rows deleted. */
export async function deleteByKeys(sql: Queryable, shape: TableShape, keys: string[], batch = 1000): Promise<number> {
  const key = quoteIdent(shape.columns[shape.keyIndex].name);
  let deleted = 0;
  for (let i = 0; i < keys.length; i += batch) {
    // Keys as a JSON array: postgres.js (fetch_types: false) does not serialize JS arrays.
    const done = await sql.unsafe(`delete from ${shape.qualified} where ${key}::text in (select jsonb_array_elements_text($1::text::jsonb))`, [JSON.stringify(keys.slice(i, i + batch))]);
    deleted += done.count;
  }
  return deleted;
}
