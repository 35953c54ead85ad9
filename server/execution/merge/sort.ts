// In-memory sort of one part, for rows that arrive unordered (the output of re-aggregation). Shard rows
// that each shard already sorted go through merge-sort.ts instead, which is O(n log k) and checks them.
import type { Row } from "../../../gen/shardrouter/v1/value_pb.js";
import { type SortKey, resolveOrder } from "./columns.js";
import { compareRows } from "./compare-values.js";
import { concatParts } from "./concatenate.js";
import type { MergeInput, MergeStep } from "./merge-step.js";

export class SortStep implements MergeStep {
  readonly name = "sort";

  constructor(private readonly keys: readonly SortKey[]) {}

  apply(input: MergeInput): MergeInput {
    const compare = compareRows(resolveOrder(this.keys, input.columns));
    // Array.prototype.sort is stable (ES2019), so equal keys keep their input (first-seen/shard) order.
    const rows: Row[] = concatParts(input.parts).slice().sort(compare);
    return { columns: input.columns, parts: [rows] };
  }
}
