// Result sets as plain JS: rows are objects keyed by column name, cells decoded by values.ts.
import type { ResultSet } from "./gen/shardrouter/v1/value_pb.ts";
import { type DecodeOptions, type TypeParser, decodeValue } from "./values.ts";

export type Row = Record<string, unknown>;

/** "object" (default): each row an object keyed by column name. "array": each row its values in column order. */
export type RowMode = "object" | "array";

/** A column as node-postgres names it: its name and its type's OID (pg_type.oid), and the type's name. */
export interface Field {
  name: string;
  dataTypeID: number;
  typeName: string;
}

export interface Column {
  name: string;
  /** Postgres' type name, e.g. "int8", "timestamptz", "_text" for text[]. */
  type: string;
  typeOid: number;
}

export interface QueryResult<R = Row> {
  /**
   * One object per row (with rowMode "array", one array of values per row). When two columns share a
   * name the later one wins in an object; alias them apart, or use rowMode "array".
   */
  rows: R[];
  /** The columns in order: name, type OID and type name (node-postgres' shape). */
  fields: Field[];
  /** The same columns as { name, type, typeOid }. */
  columns: Column[];
  /** Rows inserted, updated, deleted or returned, as Postgres reports them. */
  rowsAffected: number;
  /** The command tag's verb: SELECT, INSERT, UPDATE … */
  command: string;
}

const smallIntTypes = new Set(["int2", "int4", "oid", "_int2", "_int4", "_oid"]);

export function decodeResult<R>(rs: ResultSet | undefined, opts: DecodeOptions, rowMode: RowMode = "object"): QueryResult<R> {
  const columns = (rs?.columns ?? []).map((c) => ({ name: c.name, type: c.type, typeOid: c.typeOid }));
  const cell = columns.map((c) => cellDecoder(c, opts));
  const values = (rs?.rows ?? []).map((row) => cell.map((decode, i) => decode(row.values[i])));
  const names = columns.map((c) => c.name);
  // Object.fromEntries defines own properties, so a column named "__proto__" stays a column.
  const rows = rowMode === "array" ? values : values.map((v) => Object.fromEntries(names.map((name, i) => [name, v[i]])));
  return {
    rows: rows as R[],
    fields: columns.map((c) => ({ name: c.name, dataTypeID: c.typeOid, typeName: c.type })),
    columns,
    rowsAffected: Number(rs?.rowsAffected ?? 0n),
    command: rs?.command ?? "",
  };
}

function cellDecoder(c: Column, opts: DecodeOptions): (v: Parameters<typeof decodeValue>[0]) => unknown {
  const smallInt = smallIntTypes.has(c.type);
  const types = opts.types;
  // Own keys only: a type named "constructor" must not find Object.prototype's.
  const parser: TypeParser | undefined = types && (Object.hasOwn(types, c.type) ? types[c.type] : Object.hasOwn(types, String(c.typeOid)) ? types[String(c.typeOid)] : undefined);
  if (!parser) return (v) => decodeValue(v, opts, smallInt);
  const type = { name: c.type, oid: c.typeOid };
  return (v) => {
    const value = decodeValue(v, opts, smallInt);
    return value === null ? null : parser(value, type);
  };
}
