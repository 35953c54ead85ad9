// No MergeSpec: the shards' rows one after another, in shard order (Vitess: a plain scatter Route).
import type { MergeInput, MergeStep } from "./merge-step.js";

export class ConcatenateStep implements MergeStep {
  readonly name = "concatenate";

  apply(input: MergeInput): MergeInput {
    return { columns: input.columns, parts: [concatParts(input.parts)] };
  }
}

/** All parts' rows in shard order; reuses the only part instead of copying it. */
export function concatParts<T>(parts: readonly T[][]): T[] {
  if (parts.length === 1) return parts[0]!;
  const out: T[] = [];
  for (const part of parts) for (const row of part) out.push(row);
  return out;
}
