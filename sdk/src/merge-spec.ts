// all()'s merge options in JS shapes ↔ the MergeSpec message (out for all(), back for explain()).
// Order keys are strings as in SQL ("balance desc nulls last") or objects; aggregates are keyed by
// the column they produce.
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
  /**
   * "auto": the router derives the merge from the statement, as execute() does (ORDER BY, LIMIT,
   * GROUP BY, DISTINCT, aggregates; avg restored), and sends each shard the statement explain() shows.
   * The other merge options must then be left out.
   */
  merge?: "auto";
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
  if (opts.merge !== undefined) {
    if (opts.merge !== "auto") throw invalid(`merge: ${JSON.stringify(opts.merge)} is not "auto" (leave it out to merge as orderBy, limit, groupBy … say)`);
    const given = (["orderBy", "limit", "offset", "groupBy", "aggregates"] as const).filter((k) => opts[k] !== undefined);
    if (given.length) throw invalid(`merge "auto" derives the merge from the statement: leave out ${given.join(", ")}`);
    return create(MergeSpecSchema, { auto: true });
  }
  const orderBy = opts.orderBy === undefined ? [] : Array.isArray(opts.orderBy) ? opts.orderBy : [opts.orderBy as string | OrderKey];
  return create(MergeSpecSchema, {
    orderBy: orderBy.map(orderKey),
    limit: count("limit", opts.limit),
    offset: count("offset", opts.offset) ?? 0n,
    groupBy: typeof opts.groupBy === "string" ? [opts.groupBy] : [...(opts.groupBy ?? [])],
    aggregates: Object.entries(opts.aggregates ?? {}).map(([column, spec]) => aggregate(column, spec)),
  });
}

/** A merge as the router read it (explain()), in the shape of all()'s options. */
export interface DerivedMerge {
  orderBy: OrderKey[];
  /** Unset: no LIMIT. */
  limit?: bigint;
  offset: bigint;
  groupBy: string[];
  aggregates: Record<string, AggregateSpec>;
}

const aggregateNames = new Map<AggregateFunction, AggregateSpec>([
  [AggregateFunction.COUNT, "count"], [AggregateFunction.SUM, "sum"], [AggregateFunction.MIN, "min"], [AggregateFunction.MAX, "max"],
]);

/** The MergeSpec message as all()'s options. */
export function mergeOptionsOf(spec: MergeSpec): DerivedMerge {
  // Object.fromEntries defines own properties: a column named "__proto__" stays a column.
  const aggregates = Object.fromEntries(spec.aggregates.map((a): [string, AggregateSpec] => {
    const name = a.function === AggregateFunction.AVG ? { avg: { sum: a.sumColumn, count: a.countColumn } } : aggregateNames.get(a.function);
    // A function this SDK does not know comes from a newer router: say so rather than drop it.
    if (name === undefined) throw new ConnectError(`aggregate ${a.column}: function ${a.function} is unknown to this SDK (a newer router?)`, Code.Unimplemented);
    return [a.column, name];
  }));
  return {
    orderBy: spec.orderBy.map((o) => ({
      column: o.column, descending: o.descending, ...(o.nulls === NullsOrder.FIRST ? { nulls: "first" } : o.nulls === NullsOrder.LAST ? { nulls: "last" } : {}),
    })),
    ...(spec.limit !== undefined ? { limit: spec.limit } : {}),
    offset: spec.offset,
    groupBy: [...spec.groupBy],
    aggregates,
  };
}
