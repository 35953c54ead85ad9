// Result sets as plain JS: rows are objects keyed by column name, cells decoded by values.ts.
import type { ResultSet } from "./gen/shardrouter/v1/value_pb.ts";
import { type DecodeOptions, decodeValue } from "./values.ts";

export type Row = Record<string, unknown>;

export interface Column {
  name: string;
  /** Postgres' type name, e.g. "int8", "timestamptz", "_text" for text[]. */
  type: string;
  typeOid: number;
}

export interface QueryResult<R = Row> {
  /** One object per row. When two columns share a name the later one wins; alias them apart. */
  rows: R[];
  columns: Column[];
  /** Rows inserted, updated, deleted or returned, as Postgres reports them. */
  rowsAffected: number;
  /** The command tag's verb: SELECT, INSERT, UPDATE … */
  command: string;
}

const smallIntTypes = new Set(["int2", "int4", "oid", "_int2", "_int4", "_oid"]);

export function decodeResult<R>(rs: ResultSet | undefined, opts: DecodeOptions): QueryResult<R> {
  const columns = (rs?.columns ?? []).map((c) => ({ name: c.name, type: c.type, typeOid: c.typeOid }));
  const names = columns.map((c) => c.name);
  const smallInt = columns.map((c) => smallIntTypes.has(c.type));
  // Object.fromEntries defines own properties, so a column named "__proto__" stays a column.
  const rows = (rs?.rows ?? []).map((row) => Object.fromEntries(names.map((name, i) => [name, decodeValue(row.values[i], opts, smallInt[i])])) as R);
  return { rows, columns, rowsAffected: Number(rs?.rowsAffected ?? 0n), command: rs?.command ?? "" };
}
