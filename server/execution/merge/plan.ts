// Turns an ExecuteOnAll MergeSpec into a pipeline of merge steps (cf. Vitess' planner building
// engine primitives) and runs it. Validation happens here, once, before any row is touched, so a bad
// spec fails with InvalidArgument naming the column rather than halfway through a merge.
import { Code, ConnectError } from "@connectrpc/connect";
import { AggregateFunction, type MergeSpec } from "../../../gen/shardrouter/v1/router_pb.js";
import type { Column, Row } from "../../../gen/shardrouter/v1/value_pb.js";
import { AggregateStep, resolveAggregation } from "./aggregate.js";
import { resolveOrder } from "./columns.js";
import { ConcatenateStep, concatParts } from "./concatenate.js";
import { LimitStep } from "./limit.js";
import { MergeSortStep } from "./merge-sort.js";
import type { MergeInput, MergeStep } from "./merge-step.js";
import { RestoreAvgStep } from "./restore-avg.js";
import { SortStep } from "./sort.js";

/**
 * The steps for `spec` over shard results with `columns` (names resolved to the first column of that
 * name when a result repeats one):
 * - groupBy/aggregates: aggregate, then sort if orderBy (aggregation output is in first-seen order);
 * - else orderBy: k-way merge of the shards' already sorted rows;
 * - else: concatenate in shard order;
 * - then limit when limit or offset is set;
 * - a merge derived from the statement (`derived`): each average back in its sum helper's place.
 */
export function planMerge(spec: MergeSpec | undefined, columns: Column[], derived = false): MergeStep[] {
  const steps: MergeStep[] = [];
  const orderBy = spec?.orderBy ?? [];
  if (spec && (spec.groupBy.length || spec.aggregates.length)) {
    const { columns: output } = resolveAggregation(spec.groupBy, spec.aggregates, columns);
    resolveOrder(orderBy, output); // ORDER BY may name an AVG column the aggregation adds
    steps.push(new AggregateStep(spec.groupBy, spec.aggregates));
    if (orderBy.length) steps.push(new SortStep(orderBy));
  } else if (orderBy.length) {
    resolveOrder(orderBy, columns);
    steps.push(new MergeSortStep(orderBy));
  } else {
    steps.push(new ConcatenateStep());
  }
  if (spec && (spec.limit !== undefined || spec.offset > 0n)) {
    if ((spec.limit ?? 0n) < 0n || spec.offset < 0n) {
      throw new ConnectError("merge limit and offset must not be negative", Code.InvalidArgument);
    }
    steps.push(new LimitStep(spec.limit, spec.offset));
  }
  const averages = spec?.aggregates.filter((a) => a.function === AggregateFunction.AVG) ?? [];
  if (derived && averages.length) steps.push(new RestoreAvgStep(averages));
  return steps;
}

/** Runs the steps in order; whatever parts remain at the end are concatenated in shard order. */
export function runMerge(steps: MergeStep[], input: MergeInput): { columns: Column[]; rows: Row[] } {
  let current = input;
  for (const step of steps) current = step.apply(current);
  return { columns: current.columns, rows: concatParts(current.parts) };
}
