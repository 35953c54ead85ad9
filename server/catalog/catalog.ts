// The catalog database: router state that must outlive a router process or be shared by several
// routers: directory entries, two-phase commit decisions and shard map versions. Its schema is created
// idempotently at start, so any router can be first.
import postgres from "postgres";
import { type ConnectionConfig, passwordOf } from "../config/config.js";

const tables = [
  `create table if not exists shardrouter.directory (
     key text primary key,
     shard text not null,
     assigned_at timestamptz not null default now())`,
  `create table if not exists shardrouter.decisions (
     gid text primary key,
     decision text not null check (decision in ('commit', 'abort')),
     participants text[] not null,
     router text not null,
     decided_at timestamptz not null default now(),
     completed_at timestamptz)`,
  // Shard map versions (shard-map-store.ts): a new version is a new row, never an update.
  `create table if not exists shardrouter.shard_maps (
     version bigint primary key check (version >= 1),
     placement jsonb not null,
     shards jsonb not null,
     created_by text not null,
     created_at timestamptz not null default now())`,
];

export class Catalog {
  readonly sql: postgres.Sql;

  private constructor(sql: postgres.Sql) {
    this.sql = sql;
  }

  static async open(config: ConnectionConfig): Promise<Catalog> {
    const sql = postgres({
      host: config.host, port: config.port, database: config.database, user: config.user,
      password: passwordOf(config), max: 4, onnotice: () => {}, connect_timeout: 10,
      connection: { application_name: "shardrouter-catalog" } as never,
    });
    // Two routers starting at once may race on "if not exists": serialize with an advisory lock.
    await sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(hashtext('shardrouter.schema'))`;
      // CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema exists: a
      // `shardrouter` schema created beforehand for the router's role must be enough.
      const [{ present }] = await tx<{ present: boolean }[]>`select to_regnamespace('shardrouter') is not null as present`;
      if (!present) await tx.unsafe("create schema if not exists shardrouter");
      for (const statement of tables) await tx.unsafe(statement);
    });
    return new Catalog(sql);
  }

  async close(): Promise<void> {
    await this.sql.end({ timeout: 5 });
  }
}
