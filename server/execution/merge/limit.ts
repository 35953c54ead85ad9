// OFFSET then LIMIT over the merged rows (Vitess: engine.Limit). Each shard was asked for LIMIT limit+offset,
// so only here, after the merge, do the skipped and surplus rows go away.
import { concatParts } from "./concatenate.js";
import type { MergeInput, MergeStep } from "./merge-step.js";

export class LimitStep implements MergeStep {
  readonly name = "limit";

  /** `limit` undefined: no limit (OFFSET only). Both are uint64 on the wire. */
  constructor(private readonly limit: bigint | undefined, private readonly offset: bigint = 0n) {
    if ((limit !== undefined && limit < 0n) || offset < 0n) throw new RangeError("limit and offset must be >= 0");
  }

  apply(input: MergeInput): MergeInput {
    // Normally one part (after a merge); several are read in shard order, as concatenated.
    const rows = concatParts(input.parts);
    // Clamp before Number(): a uint64 beyond the row count must mean "past the end", not lose precision.
    const start = Number(this.offset < BigInt(rows.length) ? this.offset : BigInt(rows.length));
    const end = this.limit === undefined || this.limit >= BigInt(rows.length - start) ? rows.length : start + Number(this.limit);
    return { columns: input.columns, parts: [start === 0 && end === rows.length ? rows : rows.slice(start, end)] };
  }
}
