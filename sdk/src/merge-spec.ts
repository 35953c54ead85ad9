// all()'s merge options in JS shapes → the MergeSpec message. Order keys are strings as in SQL
// ("balance desc nulls last") or objects; aggregates are keyed by the column they produce.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { AggregateFunction, type MergeSpec, MergeSpecSchema, NullsOrder } from "./gen/shardrouter/v1/router_pb.ts";

export interface OrderKey {
  column: string;
  descending?: boolean;
  /** Unset: Postgres' default (nulls last ascending, first descending). */
  nulls?: "first" | "last";
}

/** count/sum/min/max re-aggregate that column's partial values; avg adds the column from a sum and a count column. */
export type AggregateSpec = "count" | "sum" | "min" | "max" | { avg: { sum: string; count: string } };

export interface MergeOptions {
  /** "col", "col desc", "col asc nulls first", or an OrderKey; shards' rows must already be in this order. */
  orderBy?: string | OrderKey | readonly (string | OrderKey)[];
  /** Applied after the merge; the statement should carry LIMIT limit+offset itself. */
  limit?: number | bigint;
  offset?: number | bigint;
  groupBy?: string | readonly string[];
  /** Output column → how to re-aggregate it, e.g. { n: "count", total: "sum" }. */
  aggregates?: Record<string, AggregateSpec>;
}

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

const orderText = /^(.+?)(?:\s+(asc|desc))?(?:\s+nulls\s+(first|last))?$/i;

function orderKey(key: string | OrderKey) {
  let k: OrderKey;
  if (typeof key === "string") {
    const m = orderText.exec(key.trim());
    if (!m) throw invalid(`orderBy: ${JSON.stringify(key)} is not "column [asc|desc] [nulls first|last]"`);
    k = { column: m[1], descending: m[2]?.toLowerCase() === "desc", nulls: m[3]?.toLowerCase() as OrderKey["nulls"] };
  } else {
    k = key;
  }
  if (typeof k?.column !== "string" || k.column === "") throw invalid("orderBy: every key needs a column");
  const nulls = k.nulls === undefined ? NullsOrder.UNSPECIFIED : k.nulls === "first" ? NullsOrder.FIRST : k.nulls === "last" ? NullsOrder.LAST : undefined;
  if (nulls === undefined) throw invalid(`orderBy ${k.column}: nulls must be "first" or "last"`);
  return { column: k.column, descending: !!k.descending, nulls };
}

const functions: Record<string, AggregateFunction> = {
  count: AggregateFunction.COUNT, sum: AggregateFunction.SUM, min: AggregateFunction.MIN, max: AggregateFunction.MAX,
};

function aggregate(column: string, spec: AggregateSpec) {
  if (typeof spec === "object" && spec !== null && "avg" in spec) {
    return { column, function: AggregateFunction.AVG, sumColumn: spec.avg.sum, countColumn: spec.avg.count };
  }
  const fn = functions[spec as string];
  if (fn === undefined) throw invalid(`aggregates.${column}: ${JSON.stringify(spec)} is not count, sum, min, max or { avg: { sum, count } }`);
  return { column, function: fn };
}

function count(name: string, x: number | bigint | undefined): bigint | undefined {
  if (x === undefined) return undefined;
  if ((typeof x === "number" && !Number.isSafeInteger(x)) || (typeof x !== "number" && typeof x !== "bigint") || x < 0) {
    throw invalid(`${name}: expected a non-negative integer, got ${String(x)}`);
  }
  return BigInt(x);
}

export function mergeSpec(opts: MergeOptions): MergeSpec {
  const orderBy = opts.orderBy === undefined ? [] : Array.isArray(opts.orderBy) ? opts.orderBy : [opts.orderBy as string | OrderKey];
  return create(MergeSpecSchema, {
    orderBy: orderBy.map(orderKey),
    limit: count("limit", opts.limit),
    offset: count("offset", opts.offset) ?? 0n,
    groupBy: typeof opts.groupBy === "string" ? [opts.groupBy] : [...(opts.groupBy ?? [])],
    aggregates: Object.entries(opts.aggregates ?? {}).map(([column, spec]) => aggregate(column, spec)),
  });
}
