// What Explain answers, as plain JS: the shards a statement goes to and why, the tables as the
// router's tables config sees them, the merge as all()'s options, and each shard's statement.
import type { ExplainResponse } from "./gen/shardrouter/v1/router_pb.ts";
import { type DerivedMerge, mergeOptionsOf } from "./merge-spec.ts";

export interface ExplainedTable {
  /** As the statement names it (schema-qualified when it is). */
  name: string;
  /** Its alias in the statement, or its name. */
  alias: string;
  /** "sharded", "reference", or "unknown" (not in the router's tables config: every shard). */
  role: string;
  /** Sharded tables: the shard key column ("" otherwise). */
  keyColumn: string;
  /** Sharded tables: the key values the statement pins, as placed (NULL is "NULL"); empty when none. */
  keyValues: string[];
}

export interface ExplainedStatement {
  shard: string;
  /** The text that shard receives (e.g. avg sent as sum and count, LIMIT n+m, an INSERT's own rows). */
  sql: string;
  /** The call's parameters it takes, by number: its $1 is the call's $paramNumbers[0]. */
  paramNumbers: number[];
}

export interface ExplainResult {
  /** The shards the statement goes to, in shard map order. */
  shards: string[];
  /** Why those shards, e.g. `accounts.id = "acct-1"`, or "no shard key in WHERE (…): every shard". */
  routing: string;
  /** PostgreSQL's parser's name for it: "SelectStmt", "InsertStmt" … */
  statementKind: string;
  tables: ExplainedTable[];
  /**
   * How the shards' results merge, in the shape of all()'s options; undefined when one shard answers.
   */
  merge: DerivedMerge | undefined;
  /** The merge in words, e.g. "merge-sort the shards' sorted rows by balance DESC, then keep 5", or "none: one shard answers …". */
  mergeDescription: string;
  /** What each shard receives, in the order of `shards`. */
  statements: ExplainedStatement[];
  shardMapVersion: bigint;
}

export function explainResultOf(r: ExplainResponse): ExplainResult {
  return {
    shards: [...r.shards],
    routing: r.routing,
    statementKind: r.statementKind,
    tables: r.tables.map((t) => ({ name: t.name, alias: t.alias, role: t.role, keyColumn: t.keyColumn, keyValues: [...t.keyValues] })),
    merge: r.merge ? mergeOptionsOf(r.merge) : undefined,
    mergeDescription: r.mergeDescription,
    statements: r.statements.map((s) => ({ shard: s.shard, sql: s.sql, paramNumbers: [...s.paramNumbers] })),
    shardMapVersion: r.shardMapVersion,
  };
}
