// The database's own fence at a cutover. Every router connection carries the shard map version it
// was opened under (the `shardrouter.epoch` startup setting, see NodePool); a statement trigger on
// each sharded table of a source refuses writes whose version is older than the source's minimum.
// The cutover raises that minimum before it waits for the stream, so a router that never heard of the
// cutover (cut off from the catalog) cannot write to the source afterwards: its write fails with
// SQLSTATE SR001, and it retries after it has the new map.
//
// The minimum lives in a sequence, not a table: a sequence is read outside any snapshot, so even a
// repeatable-read transaction that began before the raise sees the new value.
import type postgres from "postgres";
import type { TableShape } from "./table-schema.js";

/** SQLSTATE of a write refused because the router's shard map is older than the node's minimum. */
export const staleEpochSqlstate = "SR001";

const sequence = "shardrouter.map_epoch";
const trigger = "shardrouter_epoch_guard";

// SECURITY DEFINER: the trigger runs as whoever installed it (the resharder), so the router's own
// role needs no grant on the sequence. A connection without the setting (psql, an operator) passes.
const functionSql = `
create or replace function shardrouter.refuse_stale_epoch() returns trigger
language plpgsql security definer set search_path = pg_catalog as $$
declare
  given text := current_setting('shardrouter.epoch', true);
  required bigint;
begin
  if given is null or given = '' then return null; end if;
  select last_value into required from shardrouter.map_epoch;
  if given::bigint < required then
    raise exception 'the router''s shard map is out of date: its writes carry epoch %, this shard takes epoch % or later since a resharding cutover; the write was refused, route it again', given, required
      using errcode = '${staleEpochSqlstate}', hint = 'the router that sent it has not yet seen the new shard map';
  end if;
  return null;
end $$`;

/** Installs the sequence, function and statement triggers on a node (idempotent). */
export async function installEpochGuard(sql: postgres.Sql, shapes: Iterable<TableShape>): Promise<void> {
  // CREATE TRIGGER locks the table against writes: only where the trigger is missing.
  const missing: TableShape[] = [];
  for (const shape of shapes) {
    const rows = await sql.unsafe("select 1 from pg_trigger where tgrelid = $1::regclass and tgname = $2", [shape.qualified, trigger]);
    if (rows.length === 0) missing.push(shape);
  }
  const [{ present }] = await sql.unsafe<{ present: boolean }[]>("select to_regclass($1) is not null as present", [sequence]);
  if (missing.length === 0 && present) return;
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(hashtext('shardrouter.epoch_guard'))`;
    await tx.unsafe("create schema if not exists shardrouter");
    await tx.unsafe(`create sequence if not exists ${sequence} minvalue 0 start 0`);
    await tx.unsafe(functionSql);
    for (const shape of missing) {
      await tx.unsafe(`create or replace trigger ${trigger} before insert or update or delete or truncate on ${shape.qualified}
                       for each statement execute function shardrouter.refuse_stale_epoch()`);
    }
  });
}

/** The node's minimum version now (0: never raised). */
export async function minimumEpoch(sql: postgres.Sql | postgres.ReservedSql): Promise<number> {
  const [{ v }] = await sql.unsafe<{ v: string }[]>(`select last_value::text as v from ${sequence}`);
  return Number(v);
}

/**
 * Sets the node's minimum version; at once and outside any transaction (setval is not rolled back),
 * so an aborted cutover must set the old value back.
 */
export async function setMinimumEpoch(sql: postgres.Sql | postgres.ReservedSql, version: number): Promise<void> {
  await sql.unsafe(`select setval('${sequence}', $1::bigint, true)`, [String(version)]);
}
