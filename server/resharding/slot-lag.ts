// The reshard jobs' replication slots on each shard's primary, and how much WAL each holds back (a
// slot keeps every WAL segment its stream has not confirmed: one left behind fills the disk). Read
// for GetTopology and /metrics; pg_replication_slots and pg_current_wal_lsn() need no privilege.
import { executeStatement, newBudget } from "../execution/shard-executor.js";
import { type ShardNodes, writerOf } from "../shards/shard-set.js";

export interface SlotLag { name: string; active: boolean; lagBytes: bigint }

const query = `select slot_name::text as name, active,
    coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::int8 as lag
  from pg_replication_slots where slot_name like 'shardrouter\\_%' and database = current_database() order by 1`;

/** None when the shard's primary cannot be asked now (the answer must not wait for a sick node). */
export async function replicationSlots(shard: ShardNodes, timeoutMs = 1000): Promise<SlotLag[]> {
  try {
    const result = await executeStatement({
      shard: shard.name, pool: writerOf(shard), sql: query, params: [], signal: AbortSignal.timeout(timeoutMs), budget: newBudget(1000, 1 << 20),
    });
    return result.rows.map((r) => ({
      name: String(r.values[0].kind.value), active: r.values[1].kind.value === true, lagBytes: BigInt(r.values[2].kind.value as bigint),
    }));
  } catch {
    return [];
  }
}
