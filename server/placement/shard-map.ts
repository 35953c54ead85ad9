// The shard map: one versioned, frozen value holding the shard list and the strategy built over it.
// Resharding will build a new map and swap it in whole, so a request that picked up version N keeps a
// consistent view even while version N+1 is being installed.
import { formatPath, PlacementConfigError } from "./config-error.js";
import { DirectoryStrategy, type DirectoryStore } from "./directory.js";
import { HashModStrategy } from "./hash-mod.js";
import { HashRingStrategy } from "./hash-ring.js";
import { LegacyMd5ModStrategy } from "./legacy-md5-mod.js";
import { ListStrategy } from "./list.js";
import { PlacementConfigSchema, type PlacementConfig } from "./placement-config.js";
import { RangeStrategy } from "./range.js";
import type { PlacementStrategy, ShardInfo, ShardState, StrategyName } from "./strategy.js";

export interface ShardMap {
  readonly version: number;
  /**
   * The write epoch the cutover that made this version raised on its sources (0 for a map no cutover
   * made): a router's connections carry it, and a fenced source refuses older ones (epoch-guard.ts).
   */
  readonly epoch: number;
  readonly strategy: PlacementStrategy;
  /** The shards that take part in placement (active and draining ones). */
  readonly shards: readonly ShardInfo[];
  /** The state of every shard the map names, owning keys or not. */
  readonly states: Readonly<Record<string, ShardState>>;
}

export interface ShardMapOptions {
  /** Shard map version (default 1). */
  version?: number;
  /** Write epoch (default 0). */
  epoch?: number;
  /** Required by the directory strategy: where key -> shard entries are kept. */
  directory?: DirectoryStore;
  /** States of the map's shards, owning ones included (default: every shard given is active). */
  states?: Record<string, ShardState>;
}

// Weights only mean something where shards share a hash ring; elsewhere a weight != 1 would be a
// setting that silently does nothing, so we refuse it.
const HONOURS_WEIGHT: ReadonlySet<StrategyName> = new Set(["hash_ring", "directory"]);

/**
 * Builds and validates a shard map. Throws PlacementConfigError (an Error) whose message starts with
 * the offending field, e.g. `placement.ranges[2].shard: unknown shard "s9" (shards are s0, s1, s2)`.
 */
export function buildShardMap(config: PlacementConfig, shards: ShardInfo[], opts: ShardMapOptions = {}): ShardMap {
  // Re-check the shape too: callers may build the config in code rather than parse a file.
  const parsed = PlacementConfigSchema.safeParse(config);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    if (issue.code === "unrecognized_keys") {
      // zod puts these on the parent object; point at the misspelt field itself.
      throw new PlacementConfigError(formatPath(["placement", ...issue.path, issue.keys[0]]), "unknown setting (misspelt?)");
    }
    throw new PlacementConfigError(formatPath(["placement", ...issue.path]), issue.message);
  }
  const placement = parsed.data;

  const version = opts.version ?? 1;
  if (!Number.isSafeInteger(version) || version < 0) {
    throw new PlacementConfigError("version", `must be an integer >= 0, got ${version}`);
  }
  const frozenShards = Object.freeze(checkShards(shards, placement.strategy));

  let strategy: PlacementStrategy;
  try {
    strategy = createStrategy(placement, frozenShards, opts.directory);
  } catch (err) {
    if (err instanceof PlacementConfigError) throw err.under("placement");
    throw err;
  }
  const states = Object.freeze({ ...Object.fromEntries(frozenShards.map((x) => [x.name, "active" as ShardState])), ...opts.states });
  return Object.freeze({ version, epoch: opts.epoch ?? 0, strategy: Object.freeze(strategy), shards: frozenShards, states });
}

function checkShards(shards: ShardInfo[], strategy: StrategyName): ShardInfo[] {
  if (!Array.isArray(shards) || shards.length === 0) {
    throw new PlacementConfigError("shards", "at least one shard is required");
  }
  const seen = new Map<string, number>();
  return shards.map((shard, i) => {
    const name = shard.name;
    if (typeof name !== "string" || name.length === 0) {
      throw new PlacementConfigError(`shards[${i}].name`, "must be a non-empty string");
    }
    const earlier = seen.get(name);
    if (earlier !== undefined) {
      throw new PlacementConfigError(`shards[${i}].name`, `duplicate shard name "${name}" (also shards[${earlier}])`);
    }
    seen.set(name, i);
    const weight = shard.weight ?? 1;
    if (!Number.isInteger(weight) || weight < 1) {
      throw new PlacementConfigError(`shards[${i}].weight`, `must be an integer >= 1, got ${weight}`);
    }
    if (weight !== 1 && !HONOURS_WEIGHT.has(strategy)) {
      throw new PlacementConfigError(
        `shards[${i}].weight`,
        `weight ${weight} has no effect under the ${strategy} strategy (only hash_ring and directory use weights); remove it`,
      );
    }
    return Object.freeze({ name, weight });
  });
}

function createStrategy(
  config: PlacementConfig,
  shards: readonly ShardInfo[],
  directory: DirectoryStore | undefined,
): PlacementStrategy {
  switch (config.strategy) {
    case "hash_ring":
      return new HashRingStrategy(shards, { vnodes: config.vnodes });
    case "hash_mod":
      return new HashModStrategy(shards);
    case "legacy_md5_mod":
      return new LegacyMd5ModStrategy(shards);
    case "range":
      return new RangeStrategy(shards, config);
    case "list":
      return new ListStrategy(shards, config);
    case "directory":
      if (!directory) {
        throw new PlacementConfigError("strategy", "the directory strategy needs a directory store (the catalog), and none was given");
      }
      return new DirectoryStrategy(shards, directory, { vnodes: config.vnodes });
    default: {
      const never: never = config;
      throw new PlacementConfigError("strategy", `unknown strategy ${JSON.stringify((never as { strategy: unknown }).strategy)}`);
    }
  }
}
