// The `placement` section of the config file. The schema checks shapes only; cross-references
// (does that shard exist? do the range bounds increase?) need the shard list and are checked by
// buildShardMap, which reports them with the same field paths.
//
// Objects are strict so that a typo ("vnode", "default_shard") is an error, not a silently
// ignored setting that leaves keys on the wrong shard.
import { z } from "zod";

const vnodes = z
  .int()
  .min(1)
  .max(10_000)
  .optional()
  .describe("ring points per unit of shard weight (default 256)");

export const HashRingConfigSchema = z.strictObject({ strategy: z.literal("hash_ring"), vnodes });
export const HashModConfigSchema = z.strictObject({ strategy: z.literal("hash_mod") });
export const LegacyMd5ModConfigSchema = z.strictObject({ strategy: z.literal("legacy_md5_mod") });

export const RangeConfigSchema = z.strictObject({
  strategy: z.literal("range"),
  keyType: z.enum(["integer", "string"]),
  ranges: z
    .array(
      z.strictObject({
        shard: z.string().min(1),
        // Integer bounds may be written as strings: JSON numbers lose precision beyond 2^53.
        lessThan: z.union([z.string(), z.number()]).optional(),
      }),
    )
    .min(1),
});

export const ListConfigSchema = z.strictObject({
  strategy: z.literal("list"),
  values: z.record(z.string().min(1), z.string().min(1)),
  defaultShard: z.string().min(1).optional(),
});

export const DirectoryConfigSchema = z.strictObject({ strategy: z.literal("directory"), vnodes });

export const PlacementConfigSchema = z
  .discriminatedUnion("strategy", [
    HashRingConfigSchema,
    HashModConfigSchema,
    LegacyMd5ModConfigSchema,
    RangeConfigSchema,
    ListConfigSchema,
    DirectoryConfigSchema,
  ])
  .default({ strategy: "hash_ring" });

export type PlacementConfig = z.output<typeof PlacementConfigSchema>;
export type HashRingConfig = z.output<typeof HashRingConfigSchema>;
export type RangeConfig = z.output<typeof RangeConfigSchema>;
export type ListConfig = z.output<typeof ListConfigSchema>;
export type DirectoryConfig = z.output<typeof DirectoryConfigSchema>;
