import { Code } from "@connectrpc/connect";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { PlacementConfigError } from "../../server/placement/config-error.js";
import type { DirectoryStore } from "../../server/placement/directory.js";
import { PlacementConfigSchema, type PlacementConfig } from "../../server/placement/placement-config.js";
import { buildShardMap } from "../../server/placement/shard-map.js";
import type { ShardInfo } from "../../server/placement/strategy.js";
import { assertRejectsConnect } from "./assert-connect-error.js";

const shards = (...names: string[]): ShardInfo[] => names.map((name) => ({ name, weight: 1 }));
const three = () => shards("s0", "s1", "s2");

const memoryStore = (): DirectoryStore => {
  const entries = new Map<string, string>();
  return {
    lookup: async (k) => entries.get(k),
    assign: async (k, s) => {
      if (!entries.has(k)) entries.set(k, s);
      return entries.get(k)!;
    },
  };
};

/** Asserts buildShardMap throws a PlacementConfigError with exactly this message (or matching it). */
function rejects(config: unknown, shardList: ShardInfo[], message: string | RegExp, opts = {}): void {
  try {
    buildShardMap(config as PlacementConfig, shardList, opts);
  } catch (err) {
    assert.instance(err, PlacementConfigError);
    if (typeof message === "string") assert.is((err as Error).message, message);
    else assert.match((err as Error).message, message);
    return;
  }
  assert.unreachable(`expected: ${message}`);
}

const ALL_CONFIGS: PlacementConfig[] = [
  { strategy: "hash_ring" },
  { strategy: "hash_mod" },
  { strategy: "legacy_md5_mod" },
  { strategy: "range", keyType: "string", ranges: [{ shard: "s0", lessThan: "m" }, { shard: "s1" }] },
  { strategy: "list", values: { eu: "s0" }, defaultShard: "s1" },
  { strategy: "directory" },
];

test("the placement section defaults to hash_ring", () => {
  assert.equal(PlacementConfigSchema.parse(undefined), { strategy: "hash_ring" });
  const map = buildShardMap(PlacementConfigSchema.parse(undefined), three());
  assert.is(map.strategy.name, "hash_ring");
  assert.is(map.version, 1);
});

test("builds every strategy, with the requested version", async () => {
  for (const config of ALL_CONFIGS) {
    const map = buildShardMap(config, three(), { version: 7, directory: memoryStore() });
    assert.is(map.strategy.name, config.strategy);
    assert.is(map.version, 7);
    const placed = await map.strategy.place("eu");
    assert.ok(["s0", "s1", "s2"].includes(placed.shard), `${config.strategy}: ${placed.shard}`);
  }
});

test("empty key is InvalidArgument under every strategy; so is a lone surrogate", async () => {
  for (const config of ALL_CONFIGS) {
    const { strategy } = buildShardMap(config, three(), { directory: memoryStore() });
    await assertRejectsConnect(() => strategy.place(""), Code.InvalidArgument, "shard key must not be empty");
    await assertRejectsConnect(() => strategy.place("a\ud800b"), Code.InvalidArgument, "unpaired surrogate U+D800 at index 1");
  }
});

test("the shard map is frozen", () => {
  const map = buildShardMap({ strategy: "hash_ring" }, three());
  assert.ok(Object.isFrozen(map) && Object.isFrozen(map.shards) && Object.isFrozen(map.shards[0]));
  assert.throws(() => ((map as { version: number }).version = 2));
  assert.throws(() => (map.shards as ShardInfo[]).push({ name: "s3", weight: 1 }));
  assert.throws(() => ((map.shards[0] as ShardInfo).weight = 5));
  // The caller's array is copied, so mutating it later does not change the map.
  const input = three();
  const copy = buildShardMap({ strategy: "hash_mod" }, input);
  input[0].name = "renamed";
  assert.is(copy.shards[0].name, "s0");
});

test("range errors name the field", () => {
  rejects(
    { strategy: "range", keyType: "integer", ranges: [{ shard: "s0", lessThan: 10 }, { shard: "s1", lessThan: 20 }, { shard: "s9" }] },
    three(),
    'placement.ranges[2].shard: unknown shard "s9" (shards are s0, s1, s2)',
  );
  rejects(
    { strategy: "range", keyType: "integer", ranges: [{ shard: "s0", lessThan: 100 }, { shard: "s1", lessThan: 50 }, { shard: "s2" }] },
    three(),
    "placement.ranges[1].lessThan: bounds must increase: 50 is not greater than ranges[0].lessThan 100",
  );
  rejects(
    { strategy: "range", keyType: "string", ranges: [{ shard: "s0", lessThan: "m" }, { shard: "s1", lessThan: "m" }, { shard: "s2" }] },
    three(),
    'placement.ranges[1].lessThan: bounds must increase: "m" is not greater than ranges[0].lessThan "m"',
  );
  rejects(
    { strategy: "range", keyType: "integer", ranges: [{ shard: "s0" }, { shard: "s1" }] },
    three(),
    "placement.ranges[0].lessThan: required on every range but the last",
  );
  rejects(
    { strategy: "range", keyType: "integer", ranges: [{ shard: "s0", lessThan: 5 }, { shard: "s1", lessThan: 9 }] },
    three(),
    "placement.ranges[1].lessThan: the last range must have no lessThan (it takes every key above the previous bound)",
  );
  rejects(
    { strategy: "range", keyType: "integer", ranges: [{ shard: "s0", lessThan: "ten" }, { shard: "s1" }] },
    three(),
    'placement.ranges[0].lessThan: must be an integer when keyType is "integer", got "ten"',
  );
  rejects(
    { strategy: "range", keyType: "integer", ranges: [{ shard: "s0", lessThan: 2 ** 60 }, { shard: "s1" }] },
    three(),
    `placement.ranges[0].lessThan: must be an integer (write bounds beyond ±2^53 as strings), got ${2 ** 60}`,
  );
  rejects(
    { strategy: "range", keyType: "string", ranges: [{ shard: "s0", lessThan: 5 }, { shard: "s1" }] },
    three(),
    'placement.ranges[0].lessThan: must be a string when keyType is "string", got 5',
  );
});

test("list errors name the field", () => {
  rejects(
    { strategy: "list", values: { eu: "s0", "us-east": "s7" } },
    three(),
    'placement.values["us-east"]: unknown shard "s7" (shards are s0, s1, s2)',
  );
  rejects(
    { strategy: "list", values: { eu: "s0" }, defaultShard: "nowhere" },
    three(),
    'placement.defaultShard: unknown shard "nowhere" (shards are s0, s1, s2)',
  );
  rejects(
    { strategy: "list", values: {} },
    three(),
    "placement.values: lists no values and there is no defaultShard, so no key could be placed",
  );
});

test("directory needs a store", () => {
  rejects(
    { strategy: "directory" },
    three(),
    "placement.strategy: the directory strategy needs a directory store (the catalog), and none was given",
  );
});

test("shard list errors name the field", () => {
  rejects({ strategy: "hash_ring" }, [], "shards: at least one shard is required");
  rejects({ strategy: "hash_ring" }, shards("s0", "s1", "s0"), 'shards[2].name: duplicate shard name "s0" (also shards[0])');
  rejects({ strategy: "hash_ring" }, shards("s0", ""), "shards[1].name: must be a non-empty string");
  rejects({ strategy: "hash_ring" }, [{ name: "s0", weight: 0 }], "shards[0].weight: must be an integer >= 1, got 0");
  rejects({ strategy: "hash_ring" }, [{ name: "s0", weight: 1.5 }], "shards[0].weight: must be an integer >= 1, got 1.5");
  rejects(
    { strategy: "hash_mod" },
    [{ name: "s0", weight: 1 }, { name: "s1", weight: 3 }],
    "shards[1].weight: weight 3 has no effect under the hash_mod strategy (only hash_ring and directory use weights); remove it",
  );
  // A weight is honoured by hash_ring: no error.
  const weighted = buildShardMap({ strategy: "hash_ring" }, [{ name: "s0", weight: 3 }, { name: "s1", weight: 1 }]);
  assert.ok(weighted.strategy.ownership("s0").keyspaceFraction > 0.6);
});

test("shape errors (from the schema) also name the field", () => {
  rejects({ strategy: "hash_ring", vnodes: 0 }, three(), "placement.vnodes: Too small: expected number to be >=1");
  rejects({ strategy: "hash_ring", vnode: 64 }, three(), "placement.vnode: unknown setting (misspelt?)");
  rejects({ strategy: "consistent" }, three(), /^placement\.strategy: Invalid discriminator value\. Expected 'hash_ring' \| /);
  rejects({ strategy: "range", keyType: "integer", ranges: [] }, three(), "placement.ranges: Too small: expected array to have >=1 items");
  rejects({ strategy: "list", values: { eu: 5 } }, three(), "placement.values.eu: Invalid input: expected string, received number");
  assert.throws(() => buildShardMap({ strategy: "hash_ring" }, three(), { version: -1 }), /^version: must be an integer >= 0, got -1$/);
});

test.run();
