// Resolves MergeSpec column names to result column positions.
import { Code, ConnectError } from "@connectrpc/connect";
import { NullsOrder } from "../../../gen/shardrouter/v1/router_pb.js";
import type { Column } from "../../../gen/shardrouter/v1/value_pb.js";
import type { ResolvedOrder } from "./compare-values.js";

/**
 * Position of the column called `name`. A result may legally carry a name twice (SELECT a.id, b.id);
 * the first one wins, which is what `ORDER BY id` would be ambiguous about in SQL, so the statement
 * should alias its columns when that matters.
 */
export function columnIndex(columns: readonly Column[], name: string, role: string): number {
  const index = columns.findIndex((c) => c.name === name);
  if (index < 0) {
    const available = columns.length ? columns.map((c) => c.name).join(", ") : "(none)";
    throw new ConnectError(
      `merge ${role} names unknown column "${name}"; available columns: ${available}`,
      Code.InvalidArgument,
    );
  }
  return index;
}

/** An ORDER BY key as the MergeSpec carries it (an OrderBy message fits). */
export interface SortKey {
  column: string;
  descending: boolean;
  nulls: NullsOrder;
}

/** Binds ORDER BY keys to column positions and applies Postgres' NULLS default (LAST asc, FIRST desc). */
export function resolveOrder(keys: readonly SortKey[], columns: readonly Column[]): ResolvedOrder[] {
  return keys.map((k) => ({
    column: k.column,
    index: columnIndex(columns, k.column, "orderBy"),
    descending: k.descending,
    nullsFirst: k.nulls === NullsOrder.UNSPECIFIED ? k.descending : k.nulls === NullsOrder.FIRST,
  }));
}
