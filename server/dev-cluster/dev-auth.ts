// Auth for the local cluster (`npm start`): two API keys, kept with the cluster's data (0600) so they
// survive a restart and scripts keep working (`--fresh` wipes the folder, so it makes new ones):
//   dev     every RPC, as the router's own login (it owns the demo database: it may create tables);
//   reader  Route, Explain, Execute, ExecuteOnShard, ExecuteOnAll and GetTopology, as READER_ROLE, a login
//           that may only SELECT the tables in `public`: Postgres itself refuses its writes (42501),
//           Execute's included (its right covers the RPC, not the statement).
// The config holds only the keys' SHA-256; the keys are printed in the banner for the person at the terminal.
import { randomBytes } from "node:crypto";
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import postgres from "postgres";
import { sha256Hex } from "../auth/api-keys.js";
import type { AuthConfig } from "../auth/auth-config.js";
import { newPassword } from "./cluster-state.js";
import type { LocalCluster } from "./local-cluster.js";
import { ROUTER_ROLE, scramVerifier } from "./router-role.js";

export const READER_ROLE = "shardrouter_reader";
/** The RouterService methods of the `reader` identity (the banner lists them too). */
export const READER_RPCS: readonly string[] = ["Route", "Explain", "Execute", "ExecuteOnShard", "ExecuteOnAll", "GetTopology"];
const FILE = "dev-auth.json";

export interface DevAuth {
  /** Bearer token of the `dev` identity (every RPC). */
  devToken: string;
  /** Bearer token of the `reader` identity (read-only). */
  readerToken: string;
  /** The auth section for the local cluster's router config. */
  config: AuthConfig;
}

interface Stored { devToken: string; readerToken: string; readerPassword: string }

/** Loads (or makes) the keys, and makes sure every shard primary has the reader's role and grants. */
export async function ensureDevAuth(cluster: LocalCluster, dataDir: string): Promise<DevAuth> {
  const stored = await load(dataDir);
  for (const shard of cluster.shards) {
    const primary = shard.nodes.find((n) => n.role === "primary") ?? shard.nodes[0];
    const sql = postgres({ host: primary.host, port: primary.port, database: primary.database, user: primary.user, password: primary.password, max: 1, onnotice: () => {} });
    try {
      await ensureReaderRole(sql, stored.readerPassword, primary.database, primary.user);
    } finally {
      await sql.end({ timeout: 5 });
    }
  }
  const read = READER_RPCS.map((m) => `RouterService/${m}`);
  return {
    devToken: stored.devToken,
    readerToken: stored.readerToken,
    config: {
      open: { health: true, reflection: true },
      identities: [
        { name: "dev", jwtSubjects: [], certificateSans: [], apiKeys: [{ id: "dev", sha256: sha256Hex(stored.devToken) }], login: "router", shardLogins: {}, rpcs: ["*"], maxConcurrent: 1000 },
        { name: "reader", jwtSubjects: [], certificateSans: [], apiKeys: [{ id: "reader", sha256: sha256Hex(stored.readerToken) }],
          login: { user: READER_ROLE, password: stored.readerPassword }, shardLogins: {}, rpcs: read, maxConcurrent: 100 },
      ],
    },
  };
}

async function load(dataDir: string): Promise<Stored> {
  const file = join(dataDir, FILE);
  try {
    const stored = JSON.parse(await readFile(file, "utf8")) as Stored;
    if (typeof stored.devToken === "string" && typeof stored.readerToken === "string" && typeof stored.readerPassword === "string") return stored;
  } catch {
    // none yet (or unreadable): new keys below
  }
  const fresh: Stored = { devToken: newToken(), readerToken: newToken(), readerPassword: newPassword() };
  await writeFile(`${file}.tmp`, JSON.stringify(fresh, null, 2) + "\n", { mode: 0o600 });
  await rename(`${file}.tmp`, file);
  return fresh;
}

/** An API key: a prefix that says what it is (secret scanners key on it), and 256 random bits. */
export function newToken(): string {
  return `sr_${randomBytes(32).toString("base64url")}`;
}

/**
 * The reader's role: login, nothing else, SELECT on the tables of `public` (today's and those the
 * router or the admin create later). Idempotent; a SCRAM verifier goes into the statement, never the password.
 */
export async function ensureReaderRole(sql: postgres.Sql, password: string, database: string, admin: string, role = READER_ROLE): Promise<void> {
  const q = (name: string) => `"${name.replaceAll('"', '""')}"`;
  await sql.begin(async (tx) => {
    const [{ exists }] = await tx<{ exists: boolean }[]>`select exists (select from pg_roles where rolname = ${role}) as exists`;
    await tx.unsafe(`${exists ? "alter" : "create"} role ${q(role)} with login nosuperuser nocreatedb nocreaterole noreplication nobypassrls password '${scramVerifier(password)}'`);
    await tx.unsafe(`grant connect on database ${q(database)} to ${q(role)}`);
    await tx.unsafe(`grant usage on schema public to ${q(role)}`);
    await tx.unsafe(`grant select on all tables in schema public to ${q(role)}`);
    for (const owner of [ROUTER_ROLE, admin]) {
      await tx.unsafe(`alter default privileges for role ${q(owner)} in schema public grant select on tables to ${q(role)}`);
    }
  });
}
