// The one interface every scatter-gather merge primitive implements (cf. Vitess vtgate's engine.Primitive):
// a step takes the shards' results and returns a new set of parts, so steps compose into a pipeline
// (see plan.ts) and each can be tested on its own.
import type { Column, Row } from "../../../gen/shardrouter/v1/value_pb.js";

/** The rows travelling through the merge pipeline. */
export interface MergeInput {
  columns: Column[];
  /** One part per shard, in shard order. Steps that combine parts return a single part. */
  parts: Row[][];
}

export interface MergeStep {
  /** Short identifier for logs and tests: "concatenate", "mergeSort", "sort", "limit", "aggregate". */
  readonly name: string;
  /** Pure: never mutates `input`, its arrays, rows or values (the output may share them). */
  apply(input: MergeInput): MergeInput;
}
