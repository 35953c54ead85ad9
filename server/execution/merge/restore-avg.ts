// A merge derived from the statement (Execute, ExecuteOnAll with merge.auto) asks each shard for
// avg(x) as a sum and a count under helper names. Once re-aggregated, the average takes the place of
// those two columns, where the caller's SELECT list put avg(x), and the helpers are dropped: the caller
// gets the columns it asked for, in its order.
import { create } from "@bufbuild/protobuf";
import { type Row, RowSchema } from "../../../gen/shardrouter/v1/value_pb.js";
import type { MergeInput, MergeStep } from "./merge-step.js";

export interface AvgColumns { column: string; sumColumn: string; countColumn: string }

export class RestoreAvgStep implements MergeStep {
  readonly name = "restoreAvg";

  constructor(private readonly averages: readonly AvgColumns[]) {}

  apply(input: MergeInput): MergeInput {
    const names = input.columns.map((c) => c.name);
    const instead = new Map<number, number>(); // a sum helper's position → its average's
    const dropped = new Set<number>();
    for (const a of this.averages) {
      const sum = names.indexOf(a.sumColumn);
      const count = names.indexOf(a.countColumn);
      const avg = names.lastIndexOf(a.column); // appended by the aggregation, after every shard column
      if (sum < 0 || count < 0 || avg < 0) continue;
      instead.set(sum, avg);
      dropped.add(count).add(avg);
    }
    const order: number[] = [];
    names.forEach((_, i) => {
      if (instead.has(i)) order.push(instead.get(i)!);
      else if (!dropped.has(i)) order.push(i);
    });
    const project = (row: Row) => create(RowSchema, { values: order.map((i) => row.values[i]!) });
    return { columns: order.map((i) => input.columns[i]!), parts: input.parts.map((part) => part.map(project)) };
  }
}
