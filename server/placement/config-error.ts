// A placement config mistake, tied to the field that holds it so the message can point at the line
// a person has to fix: `placement.ranges[2].shard: unknown shard "s9" (shards are s0, s1, s2)`.
// Strategies throw it with paths relative to their own config; buildShardMap re-roots them.

export class PlacementConfigError extends Error {
  constructor(
    /** Field path, e.g. `placement.ranges[2].shard` or `shards[1].name`. */
    readonly path: string,
    /** What is wrong, without the path. */
    readonly problem: string,
  ) {
    super(`${path}: ${problem}`);
    this.name = "PlacementConfigError";
  }

  /** The same error with `prefix` put in front of its path (`ranges[2]` -> `placement.ranges[2]`). */
  under(prefix: string): PlacementConfigError {
    return new PlacementConfigError(`${prefix}.${this.path}`, this.problem);
  }

  static unknownShard(path: string, shard: string, known: readonly { name: string }[]): PlacementConfigError {
    const names = known.map((s) => s.name).join(", ");
    return new PlacementConfigError(path, `unknown shard ${JSON.stringify(shard)} (shards are ${names})`);
  }
}

/** Renders a path like zod's ["ranges", 2, "shard"] as `ranges[2].shard`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else if (typeof part === "string" && /^[A-Za-z_$][\w$]*$/.test(part)) out += out ? `.${part}` : part;
    else out += `[${JSON.stringify(String(part))}]`;
  }
  return out;
}
