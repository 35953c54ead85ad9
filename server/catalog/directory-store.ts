// The directory strategy's key → shard table, in the catalog. Assignment is insert-if-absent, so the
// first router to place a key wins and every router agrees afterwards.
import type { DirectoryStore } from "../placement/directory.js";
import type { Catalog } from "./catalog.js";

export class CatalogDirectoryStore implements DirectoryStore {
  constructor(private readonly catalog: Catalog) {}

  async lookup(key: string): Promise<string | undefined> {
    const rows = await this.catalog.sql`select shard from shardrouter.directory where key = ${key}`;
    return rows[0]?.shard;
  }

  async assign(key: string, shard: string): Promise<string> {
    const rows = await this.catalog.sql`
      with inserted as (
        insert into shardrouter.directory (key, shard) values (${key}, ${shard})
        on conflict (key) do nothing
        returning shard)
      select shard from inserted
      union all
      select shard from shardrouter.directory where key = ${key}
      limit 1`;
    // A concurrent first writer commits after this statement's snapshot: read it with a fresh one.
    return rows[0]?.shard ?? (await this.lookup(key)) ?? shard;
  }
}
