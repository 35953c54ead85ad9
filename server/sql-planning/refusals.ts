// Constructs the router cannot answer correctly across shards. Each names the construct and what to
// do instead; the router refuses (invalid_argument) rather than answer wrongly. Most are wrong only
// when the statement reaches more than one shard (a pinned statement runs whole on one shard);
// `anyShards` ones are wrong whenever other shards hold rows of the table (a subquery cannot see them).
import { Code, ConnectError } from "@connectrpc/connect";

export interface Refusal {
  /** The construct as a person would name it, e.g. "count(DISTINCT …)". */
  construct: string;
  /** What to do instead. */
  alternative: string;
  /** Wrong even when the statement runs on one shard, as soon as the shard map has several. */
  anyShards?: boolean;
}

export function refusal(construct: string, alternative: string, anyShards = false): Refusal {
  return anyShards ? { construct, alternative, anyShards } : { construct, alternative };
}

export function refusalError(r: Refusal): ConnectError {
  return new ConnectError(`${r.construct} cannot be answered across shards: ${r.alternative}`, Code.InvalidArgument);
}

/** Aggregates whose partial results cannot be combined by the merge (count, sum, min, max, avg can). */
export const unmergeableAggregates = new Set([
  "array_agg", "string_agg", "json_agg", "jsonb_agg", "json_object_agg", "jsonb_object_agg", "json_arrayagg", "json_objectagg",
  "bool_and", "bool_or", "every", "bit_and", "bit_or", "bit_xor", "xmlagg", "range_agg", "range_intersect_agg", "any_value",
  "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp", "corr", "covar_pop", "covar_samp",
  "regr_avgx", "regr_avgy", "regr_count", "regr_intercept", "regr_r2", "regr_slope", "regr_sxx", "regr_sxy", "regr_syy",
  "percentile_cont", "percentile_disc", "mode", "rank", "dense_rank", "percent_rank", "cume_dist",
]);

export const mergeableAggregates = new Set(["count", "sum", "min", "max", "avg"]);
