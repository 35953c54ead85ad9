// The router's own login role on every writable node of a local cluster. Callers send SQL through
// the router, so whatever the router's role may do, any caller may do: as the `postgres` superuser
// that would include pg_read_file, COPY ... TO PROGRAM and SET ROLE to anyone. The router therefore
// logs in as a plain role; `postgres` stays for streaming replication and for admin connections (the
// cluster's own, the tests').
//
// Run on every start (idempotent), in one transaction per node, over an admin connection:
//   - the role exists with exactly the attributes below and the password from cluster.json;
//   - it owns the database. Why owner rather than a list of GRANTs: in PostgreSQL 15+ `public` belongs
//     to pg_database_owner, so one statement gives the app-owner rights the demo needs (create tables in
//     `public`, create the `shardrouter` schema for the request log and the catalog) and nothing beyond
//     this one database — no file access, no other databases, no roles;
//   - what the admin creates later (tests set up tables over direct connections) is usable by it,
//     through default privileges;
//   - on the start that creates the role (a new cluster, or one made when the router still logged in
//     as `postgres`), the admin's schemas and relations in this database become the router's: the old
//     router ran as the admin, so it made them (`accounts`, `shardrouter.requests`, the catalog's tables).
// Replicas get all of this through WAL; startLocalCluster waits until they have replayed it.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import type postgres from "postgres";

/** The router's login role in the local cluster. */
export const ROUTER_ROLE = "shardrouter_router";

export interface RouterRoleSpec {
  role: string;      // the router's role, created if missing
  password: string;  // from newPassword(): base64url
  admin: string;     // the superuser whose future objects the router may use ("postgres")
  database: string;  // the database the router uses, owned by `role` afterwards
}

export interface RouterRoleOutcome {
  /** The password's verifier as this node now stores it (a new salt each time): replicas have replayed the setup when they store it too. */
  verifier: string;
  /** The role did not exist on this node before (a new cluster, or one from before this role). */
  created: boolean;
  /** Objects whose owner changed to the role (only when `created`), e.g. `table accounts`. */
  adopted: string[];
  /** Prepared transactions in this database owned by another role: the router cannot finish them. */
  foreignPrepared: { gid: string; owner: string }[];
}

// What the role must never have; stated on every start, so an older or hand-edited role is corrected.
const attributes = "login nosuperuser nocreatedb nocreaterole noreplication nobypassrls";
// Default privileges for objects the admin creates from now on, in any schema of this database.
// Functions and types are executable/usable by PUBLIC anyway; stated so a tightened PUBLIC still works.
const defaultGrants = ["all on tables", "all on sequences", "all on functions", "all on types", "usage, create on schemas"];

// Statements that hand the admin's schemas and relations in this database (system schemas aside) to
// the role; the server quotes every name (format %I, regclass). Sequences owned by a column follow
// their table; extension members stay with the extension. Functions and types are left to the admin:
// PUBLIC may already execute and use them.
const adoptStatements = `
  with own as (select oid, nspname, nspowner from pg_namespace where nspname !~ '^pg_' and nspname <> 'information_schema')
  select format('alter schema %I owner to %I', nspname, $2::text) as statement, 'schema ' || nspname as what
    from own where nspowner = $1::regrole
  union all
  select format('alter %s %s owner to %I',
           case c.relkind when 'v' then 'view' when 'm' then 'materialized view' when 'S' then 'sequence'
                          when 'f' then 'foreign table' else 'table' end,
           c.oid::regclass, $2::text),
         'relation ' || c.oid::regclass::text
    from pg_class c join own on own.oid = c.relnamespace
   where c.relowner = $1::regrole and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
     and not exists (select from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid
                       and (d.deptype = 'e' or (c.relkind = 'S' and d.deptype in ('a', 'i'))))`;

export async function ensureRouterRole(sql: postgres.Sql, spec: RouterRoleSpec): Promise<RouterRoleOutcome> {
  const role = ident(spec.role);
  return sql.begin(async (tx) => {
    const [{ exists }] = await tx<{ exists: boolean }[]>`select exists (select from pg_roles where rolname = ${spec.role}) as exists`;
    // PASSWORD takes no bind parameter. What goes into the statement is a SCRAM verifier, never the
    // password: a statement that fails is written to the server log, and pg_stat_activity shows it.
    const verifier = scramVerifier(spec.password);
    await tx.unsafe(`${exists ? "alter" : "create"} role ${role} with ${attributes} password ${verifierLiteral(verifier)}`);
    await tx.unsafe(`alter database ${ident(spec.database)} owner to ${role}`);
    for (const grant of defaultGrants) {
      await tx.unsafe(`alter default privileges for role ${ident(spec.admin)} grant ${grant} to ${role}`);
    }
    const adopted: string[] = [];
    if (!exists) {
      const statements = await tx.unsafe<{ statement: string; what: string }[]>(adoptStatements, [spec.admin, spec.role]);
      for (const { statement, what } of statements) {
        await tx.unsafe(statement);
        adopted.push(what);
      }
    }
    const foreignPrepared = await tx<{ gid: string; owner: string }[]>`
      select gid, owner::text from pg_prepared_xacts where database = current_database() and owner <> ${spec.role}`;
    return { verifier, created: !exists, adopted, foreignPrepared: [...foreignPrepared] };
  });
}

/** True when the node behind `sql` (a replica) stores `verifier` for `role`: it has replayed that setup. */
export async function hasRouterRole(sql: postgres.Sql, role: string, verifier: string): Promise<boolean> {
  const rows = await sql<{ same: boolean }[]>`select rolpassword = ${verifier} as same from pg_authid where rolname = ${role}`;
  return rows[0]?.same === true;
}

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677, as libpq's
 * PQencryptPasswordConn computes it client-side). Postgres stores a verifier it is given as it is.
 * SASLprep is the identity on the base64url passwords used here; other text is refused.
 */
export function scramVerifier(password: string, iterations = 4096): string {
  if (!/^[A-Za-z0-9_-]+$/.test(password)) throw new Error("router password must be base64url (see newPassword())");
  const salt = randomBytes(16);
  const salted = pbkdf2Sync(password, salt, iterations, 32, "sha256");
  const hmac = (key: Buffer, text: string) => createHmac("sha256", key).update(text).digest();
  const storedKey = createHash("sha256").update(hmac(salted, "Client Key")).digest();
  const serverKey = hmac(salted, "Server Key");
  return `SCRAM-SHA-256$${iterations}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}

/** A verifier is base64 text, digits, `$` and `:`: no quote or backslash can occur, checked anyway. */
function verifierLiteral(verifier: string): string {
  if (!/^SCRAM-SHA-256\$[0-9]+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/.test(verifier)) throw new Error("malformed SCRAM verifier");
  return `'${verifier}'`;
}

function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
