// Idempotency records, one per request_id, kept on the transaction's first participant shard and
// written INSIDE the transaction: the record commits or rolls back together with the work, with or
// without two-phase commit, so "was this request applied?" always has an exact answer. A retry
// while the first attempt is still prepared waits on the record's key (bounded by lock_timeout).
import { createHash } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { ResultSet } from "../../gen/shardrouter/v1/value_pb.js";
import { Oid } from "../execution/pg-types.js";
import { executeStatement, newBudget } from "../execution/shard-executor.js";
import type { RawParam } from "../shards/node-pool.js";
import { type ShardNodes, writerOf } from "../shards/shard-set.js";

// Each record is kept under its transaction's *home key* (the least of its keys) on the shard that
// owns that key, and a reshard moves it with that key (it is one of the moved tables, keyed by
// home_key): a retry after a cutover finds its record where the key now lives, never applies twice.
//
// CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema exists: a schema
// created beforehand for the router's role must be enough, so it is created only when missing.
// A table of the first layout (keyed by request_id alone) gets home_key (its old records: '').
// Every layout has had created_at (the start of the transaction that wrote the record, on the shard's
// clock): records are pruned by it (request-pruning.ts), so it gets an index for the expiry scan.
const requestLogSchema = [
  "if to_regnamespace('shardrouter') is null then create schema if not exists shardrouter; end if",
  `create table if not exists shardrouter.requests (
     request_id text primary key,
     request_hash bytea not null,
     transaction_id text not null,
     response bytea,
     created_at timestamptz not null default now())`,
  `if not exists (select 1 from pg_attribute where attrelid = 'shardrouter.requests'::regclass and attname = 'home_key' and not attisdropped) then
     alter table shardrouter.requests add column home_key text not null default '';
     alter table shardrouter.requests drop constraint requests_pkey, add primary key (home_key, request_id);
   end if`,
  // CREATE INDEX blocks writes to the table while it builds, and even CREATE INDEX IF NOT EXISTS first
  // queues for that lock behind every transaction holding the table (a prepared one may hold it for
  // long), with every new transfer queued behind it. So it runs only where it is cheap: when the index
  // is missing (checked in the catalog first, which takes no lock on the table) and the table is small
  // (a new one is empty; an older router's table below 32 MB builds in about 0.3 s: 0.64 s was measured
  // here for 62 MB, 300,000 records), and gives up after 200 ms of waiting for the lock, to try again at
  // the next ensureRequestLog. A bigger table of an older router is left to its operator: CREATE INDEX
  // CONCURRENTLY, which does not block writes (see docs/configuration.md).
  `if to_regclass('shardrouter.requests_created_at') is null and pg_relation_size('shardrouter.requests') < 32 * 1024 * 1024 then
     perform set_config('lock_timeout', '200ms', true);
     begin
       create index if not exists requests_created_at on shardrouter.requests (created_at);
     exception when lock_not_available then null;
     end;
   end if`,
  // The commit decisions of the transactions over several shards whose home is this shard: "commit",
  // written in the home's own local transaction, or "abort", written by recovery (see recovery.ts).
  // Never moved by a reshard: a decision belongs to a transaction, not to a key. BRIN on the time:
  // appended in order, pruned by age, and nearly free to maintain.
  `create table if not exists shardrouter.commit_decisions (
     gid text primary key,
     decision text not null check (decision in ('commit', 'abort')),
     decided_at timestamptz not null default now())`,
  "create index if not exists commit_decisions_decided_at on shardrouter.commit_decisions using brin (decided_at)",
  // Each record belongs to the login whose transaction wrote it (a caller identity's under auth). The
  // column is added without a rewrite (a constant default), under a short lock wait like the index.
  `if not exists (select 1 from pg_attribute where attrelid = 'shardrouter.requests'::regclass and attname = 'owner' and not attisdropped) then
     perform set_config('lock_timeout', '200ms', true);
     alter table shardrouter.requests add column owner text not null default session_user;
   end if`,
  // Callers reach the records only through these functions, which run as the table's owner and see,
  // write and answer only the records of the calling login (session_user: a SECURITY DEFINER function
  // does not change it). So a caller role needs no privilege on the table: it cannot read another
  // identity's responses, nor change the record that makes another's retry a replay.
  `create or replace function shardrouter.find_request(p_home_key text, p_request_id text)
     returns table (request_hash bytea, response bytea) language sql stable security definer
     set search_path = pg_catalog, pg_temp as $f$
       select r.request_hash, r.response from shardrouter.requests r
        where r.home_key in (p_home_key, '') and r.request_id = p_request_id and r.owner = session_user
        order by r.home_key desc limit 1 $f$`,
  `create or replace function shardrouter.insert_request(p_home_key text, p_request_id text, p_hash bytea, p_transaction_id text)
     returns void language sql security definer set search_path = pg_catalog, pg_temp as $f$
       insert into shardrouter.requests (home_key, request_id, request_hash, transaction_id, owner)
       values (p_home_key, p_request_id, p_hash, p_transaction_id, session_user) $f$`,
  `create or replace function shardrouter.store_response(p_home_key text, p_request_id text, p_response bytea)
     returns void language sql security definer set search_path = pg_catalog, pg_temp as $f$
       update shardrouter.requests set response = p_response
        where home_key = p_home_key and request_id = p_request_id and owner = session_user $f$`,
  // Who decided: the role whose transaction wrote it (a caller's login under auth), or a router's.
  // Always the default, never a value: grant callers INSERT (gid, decision) only, and no caller can
  // write a decision in another role's name (recovery trusts only the transaction's own; recovery.ts).
  "alter table shardrouter.commit_decisions add column if not exists prepared_by text not null default current_user",
  // And the database holds to it whatever a caller was granted: any value written is replaced.
  `create or replace function shardrouter.decided_by_current_user() returns trigger language plpgsql as
     'begin new.prepared_by := current_user; return new; end'`,
  `create or replace trigger commit_decisions_decided_by before insert or update on shardrouter.commit_decisions
     for each row execute function shardrouter.decided_by_current_user()`,
];

/** The commit point of a transaction over several shards: in the home shard's transaction, just before its COMMIT. */
export const recordCommit = "insert into shardrouter.commit_decisions (gid, decision) values ($1, 'commit')";
/**
 * Recovery's presumed abort, unless the home decided first: the insert waits for a home transaction
 * that wrote the same gid to end. No row back: a decision exists (read it with readDecision, in a
 * new statement, which sees a commit made after this one began).
 */
export const recordAbort = "insert into shardrouter.commit_decisions (gid, decision) values ($1, 'abort') on conflict (gid) do nothing returning decision";
export const readDecision = "select decision, prepared_by from shardrouter.commit_decisions where gid = $1";
/** One batch of the decisions' prune: up to $2 older than $1 ms, skipping any a transaction holds. */
export const deleteExpiredDecisions = `delete from shardrouter.commit_decisions where ctid = any (array(
    select ctid from shardrouter.commit_decisions where decided_at < now() - $1::int8 * interval '1 millisecond'
     limit $2::int4 for update skip locked))`;

/** Whether a shard has the request log, and the index of the expiry scan (ensureRequestLog's, or an operator's). */
export const requestLogState = `select to_regclass('shardrouter.requests') is not null as present,
  to_regclass('shardrouter.requests_created_at') is not null as indexed`;

/**
 * One batch of the prune, its own short transaction: up to $3 records older than $1 ms, oldest first,
 * from $2 (where the previous batch of the pass ended: the index's dead entries below it are not walked
 * again). A record locked by a transaction in flight (or prepared) is skipped, never waited for; one
 * not yet committed is not even visible. Answers how many went and the newest created_at among them.
 */
export const deleteExpiredRequests = `with doomed as (
    select ctid from shardrouter.requests
     where created_at < now() - $1::int8 * interval '1 millisecond' and created_at >= $2::timestamptz
     order by created_at limit $3::int4
       for update skip locked),
  gone as (delete from shardrouter.requests where ctid = any (array(select ctid from doomed)) returning created_at)
  select count(*)::int8 as deleted, max(created_at)::text as last from gone`;

/** The request log as the resharder moves it: with the key it is kept under. */
export const requestLogTable = { name: "shardrouter.requests", keyColumn: "home_key" } as const;

// Inside a caller's transaction, as its login: through the functions above, its own records only.
export const insertRequest = "select shardrouter.insert_request($1, $2, $3, $4)";
/** The caller's record of a request, kept under its home key or (written by the log's first layout) under ''. */
export const findInTransaction = "select request_hash, response from shardrouter.find_request($1, $2)";
export const storeResponse = "select shardrouter.store_response($1, $2, $3)";
/** Any login's record (the router's own reads, outside a transaction). */
const findAnyRecord = "select request_hash, response from shardrouter.requests where home_key in ($1, '') and request_id = $2 order by home_key desc limit 1";

/**
 * The request's fingerprint: another identity's request under the same id is another request
 * (refused as a reused id, never answered with the first one's stored response).
 */
export function requestFingerprint(body: Uint8Array, caller: { readonly identity: string } | undefined): Uint8Array {
  const hash = createHash("sha256");
  if (caller) hash.update(`identity:${caller.identity}\u0000`);
  return hash.update(body).digest();
}

export const text = (s: string): RawParam => ({ text: s, oid: 0 });
export const bytes = (b: Uint8Array): RawParam => ({ text: "\\x" + Buffer.from(b).toString("hex"), oid: Oid.bytea });

export interface StoredRequest { hash: Uint8Array; response: Uint8Array | undefined }

/** Creates the table on a shard; several routers may race, so under a transaction-scoped lock. */
export async function ensureRequestLog(shard: ShardNodes, signal: AbortSignal): Promise<void> {
  const run = (sql: string) => executeStatement({ shard: shard.name, pool: writerOf(shard), sql, params: [], signal, budget: newBudget(10, 1 << 16) });
  const exists = await run(`select exists (select 1 from pg_attribute where attrelid = to_regclass('shardrouter.requests') and attname = 'home_key' and not attisdropped)
    and to_regclass('shardrouter.requests_created_at') is not null and to_regclass('shardrouter.commit_decisions_decided_at') is not null
    and exists (select 1 from pg_trigger where tgrelid = to_regclass('shardrouter.commit_decisions') and tgname = 'commit_decisions_decided_by')
    and to_regprocedure('shardrouter.store_response(text,text,bytea)') is not null as present`);
  if (exists.rows[0].values[0].kind.value === true) return;
  for (const ddl of requestLogSchema) {
    // A single statement is its own transaction; the lock keeps concurrent CREATE ... IF NOT EXISTS apart.
    const step = ddl.startsWith("if ") ? `${ddl};` : `execute ${quote(ddl)};`;
    await run(`do $$ begin perform pg_advisory_xact_lock(hashtext('shardrouter.requests')); ${step} end $$`);
  }
}

/** The record of `requestId` kept under `homeKey` (or written before records had one) on `shard`. */
export async function findRequest(shard: ShardNodes, homeKey: string, requestId: string, signal: AbortSignal): Promise<StoredRequest | undefined> {
  let result: ResultSet;
  try {
    result = await executeStatement({
      shard: shard.name, pool: writerOf(shard), signal, budget: newBudget(2, 64 << 20),
      sql: findAnyRecord,
      params: [text(homeKey), text(requestId)],
    });
  } catch (err) {
    if (needsRequestLog(err)) return undefined;
    throw err;
  }
  const row = result.rows[0];
  if (!row) return undefined;
  const [hash, response] = row.values;
  return { hash: hash.kind.value as Uint8Array, response: response.kind.case === "bytesValue" ? response.kind.value : undefined };
}

/** The request log is missing on a shard, or has its first layout: ensureRequestLog, then again. */
export function needsRequestLog(err: unknown): boolean {
  return err instanceof ConnectError && err.code === Code.InvalidArgument &&
    /relation "shardrouter\.(requests|commit_decisions)" does not exist|schema "shardrouter" does not exist|column "?(r\.)?(home_key|prepared_by|owner)"?( of relation "(requests|commit_decisions)")? does not exist|function shardrouter\.(find_request|insert_request|store_response)\(/.test(err.rawMessage);
}

function quote(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}
