// Explicit value -> shard, e.g. region -> shard for geographic sharding ("eu" lives in Frankfurt).
// Keys match exactly (case-sensitive). A key that is not listed goes to `defaultShard`, or is refused
// with NotFound when there is none: guessing a shard for an unknown region would put data in the
// wrong jurisdiction.
import { Code, ConnectError } from "@connectrpc/connect";
import { PlacementConfigError } from "./config-error.js";
import { keyspaceId } from "./murmur3.js";
import type { ListConfig } from "./placement-config.js";
import { assertShardKey, quoteKey } from "./shard-key.js";
import type { Ownership, Placement, PlacementStrategy, ShardInfo } from "./strategy.js";

const SHOWN_VALUES = 10;

export class ListStrategy implements PlacementStrategy {
  readonly name = "list";
  // A Map, not the config object: a plain object would answer keys like "constructor" or "__proto__".
  private readonly values: ReadonlyMap<string, string>;
  private readonly defaultShard: string | undefined;

  constructor(shards: readonly ShardInfo[], config: Pick<ListConfig, "values" | "defaultShard">) {
    const known = new Set(shards.map((s) => s.name));
    const values = new Map<string, string>();
    for (const [value, shard] of Object.entries(config.values)) {
      if (!known.has(shard)) throw PlacementConfigError.unknownShard(`values[${JSON.stringify(value)}]`, shard, shards);
      values.set(value, shard);
    }
    if (config.defaultShard !== undefined && !known.has(config.defaultShard)) {
      throw PlacementConfigError.unknownShard("defaultShard", config.defaultShard, shards);
    }
    if (values.size === 0 && config.defaultShard === undefined) {
      throw new PlacementConfigError("values", "lists no values and there is no defaultShard, so no key could be placed");
    }
    this.values = values;
    this.defaultShard = config.defaultShard;
  }

  place(key: string): Placement {
    assertShardKey(key);
    const shard = this.values.get(key) ?? this.defaultShard;
    if (shard === undefined) {
      throw new ConnectError(
        `no shard for key ${quoteKey(key)} under the list strategy: it is not one of the listed values and there is no defaultShard`,
        Code.NotFound,
      );
    }
    return { shard, keyspaceId: keyspaceId(key) };
  }

  ownership(shard: string): Ownership {
    const listed = [...this.values].filter(([, s]) => s === shard).map(([value]) => quoteKey(value));
    const parts: string[] = [];
    if (listed.length > 0) {
      const more = listed.length > SHOWN_VALUES ? ` and ${listed.length - SHOWN_VALUES} more` : "";
      parts.push(`keys ${listed.slice(0, SHOWN_VALUES).join(", ")}${more}`);
    }
    if (shard === this.defaultShard) parts.push("every key not listed (default shard)");
    return { description: parts.length ? parts.join("; ") : "no keys (not named by the list)", keyspaceFraction: 0 };
  }
}
