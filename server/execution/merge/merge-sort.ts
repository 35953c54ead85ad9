// k-way merge of shard results that each shard already sorted with the statement's ORDER BY
// (Vitess: engine.MergeSort). A binary heap holds one cursor per non-empty part: O(n log k) comparisons.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Row } from "../../../gen/shardrouter/v1/value_pb.js";
import { type SortKey, resolveOrder } from "./columns.js";
import { compareKey, compareRows, type ResolvedOrder } from "./compare-values.js";
import type { MergeInput, MergeStep } from "./merge-step.js";

export class MergeSortStep implements MergeStep {
  readonly name = "mergeSort";

  constructor(private readonly keys: readonly SortKey[]) {}

  apply(input: MergeInput): MergeInput {
    const order = resolveOrder(this.keys, input.columns);
    return { columns: input.columns, parts: [mergeSorted(input.parts, order)] };
  }
}

/**
 * Merges parts sorted by `order` into one sorted array; equal keys keep shard order, then each shard's
 * own order (stable). Every row is compared with the previous row of its part, so a part that is not in
 * that order is reported instead of silently producing a wrong interleaving: the statement lacks the
 * ORDER BY, or a shard's collation sorts text differently from code-point (C collation) order.
 */
export function mergeSorted(parts: readonly Row[][], order: readonly ResolvedOrder[]): Row[] {
  const compare = compareRows(order);
  const live: number[] = [];
  let total = 0;
  for (let p = 0; p < parts.length; p++) {
    if (parts[p]!.length) live.push(p);
    total += parts[p]!.length;
  }
  if (live.length <= 1) {
    const only = live.length ? parts[live[0]!]! : [];
    for (let i = 1; i < only.length; i++) checkOrder(order, compare, only[i - 1]!, only[i]!);
    return only; // shared, not copied: steps never mutate their input
  }

  const pos = new Array<number>(parts.length).fill(0);
  // Heap order: the row, then the part index, which is what makes the merge stable across shards.
  const less = (p: number, q: number): boolean => {
    const c = compare(parts[p]![pos[p]!]!, parts[q]![pos[q]!]!);
    return c < 0 || (c === 0 && p < q);
  };
  const heap = live; // part indices
  const siftDown = (i: number): void => {
    const n = heap.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) return;
      const r = l + 1;
      const m = r < n && less(heap[r]!, heap[l]!) ? r : l;
      if (!less(heap[m]!, heap[i]!)) return;
      [heap[i], heap[m]] = [heap[m]!, heap[i]!];
      i = m;
    }
  };

  for (let i = (heap.length >> 1) - 1; i >= 0; i--) siftDown(i);

  const out = new Array<Row>(total);
  let k = 0;
  while (heap.length) {
    const p = heap[0]!;
    const part = parts[p]!;
    const row = part[pos[p]!]!;
    out[k++] = row;
    if (++pos[p]! < part.length) {
      checkOrder(order, compare, row, part[pos[p]!]!);
    } else {
      heap[0] = heap[heap.length - 1]!;
      heap.pop();
    }
    siftDown(0);
  }
  return out;
}

function checkOrder(order: readonly ResolvedOrder[], compare: (a: Row, b: Row) => number, prev: Row, next: Row): void {
  if (compare(prev, next) <= 0) return;
  const key = order.find((k) => compareKey(k, prev, next) !== 0)!;
  throw new ConnectError(
    `shard results are not ordered by ${describeKey(key)}: add the same ORDER BY to the statement`,
    Code.FailedPrecondition,
  );
}

/** SQL spelling of one key; NULLS is spelled out only when it differs from Postgres' default. */
function describeKey(k: ResolvedOrder): string {
  const nulls = k.nullsFirst === k.descending ? "" : k.nullsFirst ? " NULLS FIRST" : " NULLS LAST";
  return `${k.column} ${k.descending ? "DESC" : "ASC"}${nulls}`;
}
