// What a statement does, as resharding needs to know it. Whether it only reads: a cutover holds
// writes to moving keys, not reads. A statement reads only when it is a SELECT (or VALUES) with no data-modifying part (a WITH … INSERT)
// and no code the guard cannot read (a function that is not built in may write): anything else counts
// as a write. Built-in functions with side effects (nextval, pg_notify …) touch no sharded row.
import { type ParseNode, parse } from "./parser.js";
import { checkStatement } from "./statement-guard.js";

const writes = new Set(["InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"]);
const known = new Map<string, boolean>();
const maxRemembered = 4096;

export function isReadOnly(sql: string): boolean {
  const remembered = known.get(sql);
  if (remembered !== undefined) return remembered;
  const verdict = judge(sql);
  if (sql.length <= 4096) {
    if (known.size >= maxRemembered) known.clear();
    known.set(sql, verdict);
  }
  return verdict;
}

function judge(sql: string): boolean {
  const { stmts } = parse(sql);
  if (stmts.length !== 1 || !("SelectStmt" in stmts[0].stmt)) return false;
  if (checkStatement(sql) === "isolated") return false;
  return !modifies(stmts[0].stmt);
}

function modifies(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(modifies);
  if (value === null || typeof value !== "object") return false;
  for (const key in value as ParseNode) {
    if (writes.has(key)) return true;
    if (modifies((value as ParseNode)[key])) return true;
  }
  return false;
}

/** Statement kinds that change no table's shape or contents wholesale; every other kind does (DDL, TRUNCATE). */
const notSchemaChanges = new Set([
  "SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "ExplainStmt", "VariableShowStmt",
  "CallStmt", "DoStmt", "LockStmt", "NotifyStmt", "CheckPointStmt",
  "TransactionStmt", // only SAVEPOINT and its kin get this far, inside an interactive transaction
]);

/**
 * The kind of a statement that changes a schema or empties tables (e.g. "AlterTableStmt",
 * "TruncateStmt"), or undefined. Logical replication carries neither DDL nor a TRUNCATE the job
 * could apply, so they are refused while a reshard job runs.
 */
export function schemaChange(sql: string): string | undefined {
  const { stmts } = parse(sql);
  const kind = stmts.length === 1 ? Object.keys(stmts[0].stmt)[0] : undefined;
  return kind && !notSchemaChanges.has(kind) ? kind : undefined;
}

/** Whether a statement kind (the parse tree's tag) changes a schema or empties tables. */
export function isSchemaChangeKind(kind: string): boolean {
  return !notSchemaChanges.has(kind);
}

const plainDml = /^\s*(?:insert|update|delete|merge|select|with|values)\b/i;

/** `schemaChange(sql) !== undefined`, without parsing the common writes (plain DML by its first word). */
export function changesSchema(sql: string): boolean {
  return !plainDml.test(sql) && schemaChange(sql) !== undefined;
}
