// Shards registered at run time (AdminService.AddShard): the addresses of their nodes, kept in the
// catalog so that every router, those started later included, connects to them without a config
// change. No credentials are stored: each router logs in with its own shard login (config
// shardLogin). A registration is a new row, never changed; it is announced on a channel, and
// routers also poll, so a lost notification only delays them.
import { z } from "zod";
import type { ShardLogin } from "../config/config.js";
import type { ShardDefinition } from "../shards/shard-set.js";
import type { Catalog } from "./catalog.js";
import { CatalogWatch } from "./catalog-watch.js";

export const shardRegistryChannel = "shardrouter_shard_registry";

export interface RegisteredNode { name: string; host: string; port: number; database: string; role: "primary" | "replica" }
export interface RegisteredShard { name: string; weight: number; nodes: RegisteredNode[] }

// Rows are checked before a router connects: someone may have written one by hand.
const NodesSchema = z.array(z.object({
  name: z.string().min(1),
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535),
  database: z.string().min(1),
  role: z.enum(["primary", "replica"]),
}).strict()).min(1);

export class ShardRegistry {
  constructor(private readonly catalog: Catalog) {}

  /** Every registered shard; a malformed row is reported to `onMalformed` and left out. */
  async list(onMalformed: (name: string, reason: string) => void = () => {}): Promise<RegisteredShard[]> {
    const rows = await this.catalog.sql<{ name: string; weight: number; nodes: unknown }[]>`
      select name, weight, nodes from shardrouter.shard_registry order by added_at, name`;
    const shards: RegisteredShard[] = [];
    for (const row of rows) {
      const nodes = NodesSchema.safeParse(row.nodes);
      if (nodes.success) shards.push({ name: row.name, weight: row.weight, nodes: nodes.data });
      else onMalformed(row.name, `nodes${nodes.error.issues[0].path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("")}: ${nodes.error.issues[0].message}`);
    }
    return shards;
  }

  /** Registers a shard and announces it; false when the name is taken. */
  async add(shard: RegisteredShard, by: string): Promise<boolean> {
    return this.catalog.sql.begin(async (tx) => {
      const added = await tx`insert into shardrouter.shard_registry (name, weight, nodes, added_by)
        values (${shard.name}, ${shard.weight}, ${tx.json(shard.nodes as never)}, ${by}) on conflict (name) do nothing`;
      if (added.count === 0) return false;
      await tx`select pg_notify(${shardRegistryChannel}, ${shard.name})`;
      return true;
    });
  }

  /**
   * Hands each registered shard to `onShard` once it is seen (at start, on a notification, at each
   * poll); `onShard` decides what is new. check() looks now, e.g. for a map naming an unknown shard.
   */
  async follow(pollMs: number, onShard: (shard: RegisteredShard) => void, onMalformed?: (name: string, reason: string) => void): Promise<{ check(): Promise<void>; stop(): Promise<void> }> {
    const watch = new CatalogWatch(async () => {
      for (const shard of await this.list(onMalformed)) if (!watch.stopped) onShard(shard);
    }, pollMs);
    await watch.start((notified) => this.catalog.sql.listen(shardRegistryChannel, () => notified()));
    await watch.check();
    return { check: () => watch.check(), stop: () => watch.stop() };
  }
}

/**
 * A registered shard as a router builds its pools: its nodes' addresses with this router's shard
 * login, TLS included (config shardLogin.ssl, else the first configured primary's: see shardLoginOf).
 * The catalog holds no TLS settings: what a router trusts is its own config's business.
 */
export function definitionOf(shard: RegisteredShard, login: ShardLogin): ShardDefinition {
  return { name: shard.name, weight: shard.weight, nodes: shard.nodes.map((n) => ({ ...n, ...login })) };
}
