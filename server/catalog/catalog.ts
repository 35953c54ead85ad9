// The catalog database: router state that must outlive a router process or be shared by several
// routers: directory entries, two-phase commit decisions, shard map versions, registered shards,
// reshard jobs and the worker ids of global ids. Its schema is created idempotently at start, so any router can be first.
import postgres from "postgres";
import { type ConnectionConfig, passwordOf } from "../config/config.js";
import { postgresSsl } from "../config/postgres-tls.js";

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
     epoch bigint not null default 0,
     created_by text not null,
     created_at timestamptz not null default now())`,
  `create sequence if not exists shardrouter.fence_epochs`,
  // A cutover's write fence (fence-store.ts): routers hold writes to the moving keys while it holds.
  `create table if not exists shardrouter.fences (
     job text primary key,
     from_version bigint not null,
     placement jsonb not null,
     shards jsonb not null,
     state text not null check (state in ('holding', 'lifted', 'aborted')),
     epoch bigint not null,
     to_version bigint,
     started_at timestamptz not null default now())`,
  `create table if not exists shardrouter.fence_acks (
     job text not null,
     router text not null,
     acked_at timestamptz not null default now(),
     primary key (job, router))`,
  // Resharding jobs (reshard-job-store.ts), run by whichever router holds the lease.
  `create table if not exists shardrouter.reshard_jobs (
     id text primary key,
     from_version bigint not null,
     target jsonb not null,
     auto_cutover boolean not null,
     cutover_requested boolean not null default false,
     cancel_requested boolean not null default false,
     phase text not null,
     error text,
     moves jsonb not null default '[]',
     progress jsonb,
     verify jsonb,
     cutover jsonb,
     to_version bigint,
     lease_owner text,
     lease_until timestamptz,
     created_at timestamptz not null default now(),
     updated_at timestamptz not null default now())`,
  // Shards registered with AddShard (shard-registry.ts): their nodes' addresses, never a password.
  `create table if not exists shardrouter.shard_registry (
     name text primary key,
     weight int not null check (weight between 1 and 1000),
     nodes jsonb not null,
     added_by text not null,
     added_at timestamptz not null default now())`,
  // Routers that are serving: a cutover waits for the acknowledgements of those seen lately.
  `create table if not exists shardrouter.routers (
     id text primary key,
     seen_at timestamptz not null default now())`,
  // Worker ids of global ids (ids/worker-lease.ts): leased by one router at a time.
  `create table if not exists shardrouter.id_workers (
     worker_id int primary key check (worker_id between 0 and 1023),
     owner text not null,
     lease_until timestamptz not null,
     issued_until_ms bigint not null,
     claimed_at timestamptz not null default now())`,
];

export class Catalog {
  readonly sql: postgres.Sql;

  private constructor(sql: postgres.Sql) {
    this.sql = sql;
  }

  static async open(config: ConnectionConfig): Promise<Catalog> {
    const sql = postgres({
      host: config.host, port: config.port, database: config.database, user: config.user,
      password: passwordOf(config), ssl: postgresSsl(config.ssl, config.host), max: 4, onnotice: () => {}, connect_timeout: 10,
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
      // The write epoch of the cutover that made a version came after the table: catalogs made
      // earlier get it here. ALTER needs ownership even when the column exists, so look first.
      // (pg_attribute, not information_schema, which hides columns the role has no grant on.)
      const [{ has }] = await tx<{ has: boolean }[]>`select exists (select from pg_attribute
        where attrelid = 'shardrouter.shard_maps'::regclass and attname = 'epoch' and not attisdropped) as has`;
      if (!has) await tx.unsafe("alter table shardrouter.shard_maps add column epoch bigint not null default 0");
    });
    return new Catalog(sql);
  }

  async close(): Promise<void> {
    await this.sql.end({ timeout: 5 });
  }
}
