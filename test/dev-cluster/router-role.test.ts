// The local cluster logs the router in as its own role, which is no superuser: what a caller sends
// through the router runs with that role's rights only. Everything the router does still works as it
// (two-phase commit and recovery, health checks, replicas, the catalog), tables the admin creates are
// usable through the router, and a cluster made when the router logged in as `postgres` upgrades.
import { randomUUID } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as assert from "uvu/assert";
import { PostgresErrorDetailSchema } from "../../gen/shardrouter/v1/errors_pb.js";
import { ReadPreference, RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import { Catalog } from "../../server/catalog/catalog.js";
import { parseConfig } from "../../server/config/config.js";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { devConfig } from "../../server/dev-cluster/dev-config.js";
import type { LocalCluster, LocalNode } from "../../server/dev-cluster/local-cluster.js";
import { ROUTER_ROLE } from "../../server/dev-cluster/router-role.js";
import { startRouter } from "../../server/router.js";
import { plainRows } from "../e2e/values.js";
import { failure } from "../harness/failure.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";
import { inTempDir, nodesOf, withSql } from "./helpers.js";

let t: TestRouter;
const str = (value: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value } });

/** The role's attributes as the node's admin sees them (not as the router reports itself). */
const attributesOf = (node: LocalNode, role: string) => withSql(node, (sql) => sql`
  select rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls,
         (select pg_get_userbyid(datdba) from pg_database where datname = current_database()) as dbowner
    from pg_roles where rolname = ${role}`.then((rows) => ({ ...rows[0] })));

const notPrivileged = {
  rolcanlogin: true, rolsuper: false, rolcreatedb: false, rolcreaterole: false, rolreplication: false, rolbypassrls: false, dbowner: ROUTER_ROLE,
};

/** Two keys the router places on different shards. */
async function crossShardKeys(prefix: string): Promise<[string, string]> {
  const first = `${prefix}-0`;
  const home = (await t.connect.route({ key: first })).shard;
  for (let i = 1; ; i++) {
    if ((await t.connect.route({ key: `${prefix}-${i}` })).shard !== home) return [first, `${prefix}-${i}`];
  }
}

test.before(hook(async () => {
  t = await startTestRouter({ shards: 2, replicas: 1, transactions: { inDoubtGraceMs: 300, recoveryIntervalMs: 100, lockTimeoutMs: 500 } });
}));
test.after(hook(async () => { await t?.stop(); }));

test("the router logs in as its own role, which is no superuser on any node; postgres stays the admin", async () => {
  assert.is(t.cluster.routerRole.user, ROUTER_ROLE);
  assert.ok(t.cluster.routerRole.password.length >= 20);
  assert.is.not(t.cluster.routerRole.password, t.cluster.catalog.password, "its own password");
  for (const n of nodesOf(t.cluster)) {
    assert.is(n.user, "postgres", `${n.name}: admin connections stay the superuser`);
    assert.equal(await attributesOf(n, ROUTER_ROLE), notPrivileged, `${n.name} (replicas through WAL)`);
  }
  for (const n of [...t.config.shards.flatMap((s) => s.nodes), t.config.catalog!]) assert.is(n.user, ROUTER_ROLE, "the router's config");
  for (const readPreference of [ReadPreference.PRIMARY, ReadPreference.REPLICA]) {
    const r = await t.connect.executeOnShard({ key: "k", sql: "select current_user::text", readPreference });
    assert.equal(plainRows(r.result), [[ROUTER_ROLE]], `current_user on the ${ReadPreference[readPreference]}`);
  }
});

test("pg_read_file through the router is refused: permission_denied with SQLSTATE 42501", async () => {
  for (const sql of ["select pg_read_file('postmaster.opts')", "select pg_ls_dir('.')"]) {
    const err = await failure(t.connect.executeOnShard({ key: "k", sql }));
    assert.is(err.code, Code.PermissionDenied, `${sql}: ${err.message}`);
    assert.is(err.findDetails(PostgresErrorDetailSchema)[0]?.sqlstate, "42501", sql);
  }
});

test("health checks work as the role: every node is up with the role and timeline it reports", async () => {
  const topology = await waitFor("every node up", async () => {
    const top = await t.connect.getTopology({});
    return top.shards.every((s) => s.nodes.every((n) => n.status === "up")) ? top : undefined;
  });
  for (const s of topology.shards) {
    assert.equal(s.nodes.map((n) => [n.role, n.timeline > 0 || n.role === "replica", n.fenced]), [["primary", true, false], ["replica", true, false]], s.name);
  }
});

test("what the admin creates, in any schema, is usable through the router (default privileges)", async () => {
  for (const s of t.cluster.shards) {
    await t.direct(s.nodes[0]).unsafe(`create schema if not exists app;
      create table app.notes (id serial primary key, body text not null);
      create type app.mood as enum ('fine', 'grand');
      create function app.shout(text) returns text language sql immutable as 'select upper($1)'`);
  }
  const r = await t.connect.executeOnShard({ key: "k", sql: "insert into app.notes (body) values (app.shout($1)) returning id, body, 'grand'::app.mood::text", params: [str("hi")] });
  assert.equal(plainRows(r.result), [[1n, "HI", "grand"]]);
});

test("a cross-shard Transfer commits with two-phase commit; the router owns the request log and the catalog's tables", async () => {
  const [from, to] = await crossShardKeys("rr-acct");
  for (const s of t.cluster.shards) {
    await t.direct(s.nodes[0])`create table if not exists accounts (id text primary key, balance bigint not null check (balance >= 0))`;
  }
  for (const key of [from, to]) await t.connect.executeOnShard({ key, sql: "insert into accounts values ($1, 100)", params: [str(key)] });
  const res = await t.connect.transfer({ fromKey: from, toKey: to, amount: 30n, requestId: randomUUID() });
  assert.equal([res.twoPhase, res.fromBalance, res.toBalance], [true, 70n, 130n]);

  const home = t.cluster.shards.find((s) => s.name === res.fromShard)!.nodes[0];
  const [{ owner }] = await t.direct(home)`select pg_get_userbyid(relowner) as owner from pg_class where oid = 'shardrouter.requests'::regclass`;
  assert.is(owner, ROUTER_ROLE, "the router created its request log itself");
  const catalogOwners = await t.direct(t.cluster.catalog)`
    select c.relname, pg_get_userbyid(c.relowner) as owner from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = 'shardrouter' and c.relkind = 'r' order by 1`;
  assert.equal(catalogOwners.map((r) => [r.relname, r.owner]), ["decisions", "directory", "fence_acks", "fences", "id_workers", "reshard_jobs", "routers", "shard_maps", "shard_registry"].map((n) => [n, ROUTER_ROLE]));
});

test("a transaction the router's role prepared is recovered by the router; one the admin prepared the role cannot finish", async () => {
  const shard = t.cluster.shards[0].nodes[0];
  await t.direct(shard)`create table if not exists rr_marks (id text primary key)`;
  // A dead router's prepared transaction and its commit decision: recovery commits it.
  await t.direct(t.cluster.catalog)`insert into shardrouter.decisions (gid, decision, participants, router) values ('sr_rrdead_1_1', 'commit', ${[t.cluster.shards[0].name]}, 'rrdead')`;
  await t.asRouter(shard).begin(async (tx) => {
    await tx`insert into rr_marks values ('recovered')`;
    await tx.prepare("sr_rrdead_1_1");
  });
  await waitFor("recovery to commit sr_rrdead_1_1", async () => {
    const [{ c }] = await t.direct(shard)`select count(*)::int as c from pg_prepared_xacts where gid = 'sr_rrdead_1_1'`;
    return c === 0 ? true : undefined;
  });
  assert.equal((await t.direct(shard)`select id from rr_marks`).map((r) => r.id), ["recovered"]);

  // Why every router instance and recovery must run as one role: only it (or a superuser) may finish it.
  await t.direct(shard).begin(async (tx) => { await tx`select 1`; await tx.prepare("other_admin_1"); });
  const refused = await t.asRouter(shard).unsafe("commit prepared 'other_admin_1'").then(() => undefined, (e) => e as { code?: string });
  assert.is(refused?.code, "42501");
  await t.direct(shard).unsafe("rollback prepared 'other_admin_1'");
});

test("the catalog needs no CREATE on the database when its shardrouter schema exists (docs/configuration.md: the router's role)", async () => {
  const admin = t.direct(t.cluster.catalog);
  // A narrower role than the local cluster's: no database ownership, only CREATE on the schema.
  await admin.unsafe(`create role rr_narrow login password 'rr-narrow-pass'; grant usage, create on schema shardrouter to rr_narrow`);
  try {
    const [{ create }] = await admin`select has_database_privilege('rr_narrow', current_database(), 'create') as create`;
    assert.is(create, false);
    const catalog = await Catalog.open({ ...t.config.catalog!, user: "rr_narrow", password: "rr-narrow-pass", passwordEnv: undefined });
    await catalog.close();
  } finally {
    await admin.unsafe(`drop owned by rr_narrow; drop role rr_narrow`);
  }
});

test("a cluster made when the router logged in as postgres upgrades: a new role that owns what the old router made", () =>
  inTempDir(async (dir, start, logs) => {
    const serve = async (cluster: LocalCluster) => {
      const router = await startRouter(parseConfig(devConfig(cluster, { port: 0 })));
      return { router, client: createClient(RouterService, createConnectTransport({ baseUrl: router.url, httpVersion: "1.1" })) };
    };
    const first = await start({ fresh: true });
    const requestId = randomUUID();
    let from: string, to: string;
    {
      const { router, client } = await serve(first);
      try {
        await seedDemoAccounts(router.planner);
        from = "acct-0";
        const home = (await client.route({ key: from })).shard;
        let i = 1;
        while ((await client.route({ key: `acct-${i}` })).shard === home) i++;
        to = `acct-${i}`;
        const res = await client.transfer({ fromKey: from, toKey: to, amount: 5n, requestId });
        assert.ok(res.twoPhase);
      } finally {
        await router.close();
      }
    }
    // The old layout: no router role, everything owned by postgres, no router fields in cluster.json.
    for (const n of nodesOf(first)) {
      await withSql(n, (sql) => sql.unsafe(`reassign owned by ${ROUTER_ROLE} to postgres; drop owned by ${ROUTER_ROLE}; drop role ${ROUTER_ROLE}`));
    }
    await first.stop();
    const file = join(dir, "cluster.json");
    const state = JSON.parse(await readFile(file, "utf8"));
    const oldPassword = state.routerPassword;
    delete state.routerUser;
    delete state.routerPassword;
    await writeFile(file, JSON.stringify(state), { mode: 0o600 });

    const logged = logs.length;
    const second = await start();
    assert.ok(logs.slice(logged).some((l) => l.includes(`created login role ${ROUTER_ROLE}`)), "the next start creates the role");
    const saved = JSON.parse(await readFile(file, "utf8"));
    assert.is(saved.routerUser, ROUTER_ROLE, "cluster.json gets the router's role");
    assert.is(saved.routerPassword, second.routerRole.password);
    assert.is.not(saved.routerPassword, oldPassword);
    assert.not.ok(logs.some((l) => l.includes(saved.routerPassword)), "the router's password is never logged");
    for (const n of nodesOf(second)) assert.equal(await attributesOf(n, ROUTER_ROLE), notPrivileged, n.name);
    const owners = (n: LocalNode) => withSql(n, (sql) => sql`
      select n.nspname || '.' || c.relname as name, pg_get_userbyid(c.relowner) as owner from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where n.nspname in ('public', 'shardrouter') and c.relkind = 'r'
      union all select 'schema ' || nspname, pg_get_userbyid(nspowner) from pg_namespace where nspname = 'shardrouter'
      order by 1`.then((rows) => rows.map((r) => [r.name, r.owner])));
    for (const s of second.shards) {
      for (const [name, owner] of await owners(s.nodes[0])) assert.is(owner, ROUTER_ROLE, `${s.name}: ${name}`);
    }
    assert.equal(await owners(second.catalog), ["schema shardrouter", ...["decisions", "directory", "fence_acks", "fences", "id_workers", "reshard_jobs", "routers", "shard_maps", "shard_registry"].map((n) => `shardrouter.${n}`)].map((n) => [n, ROUTER_ROLE]));

    const { router, client } = await serve(second);
    try {
      const replay = await client.transfer({ fromKey: from!, toKey: to!, amount: 5n, requestId });
      assert.ok(replay.replayed, "the old request log is readable by the new role");
      const again = await client.transfer({ fromKey: from!, toKey: to!, amount: 5n, requestId: randomUUID() });
      assert.equal([again.twoPhase, again.replayed, again.fromBalance], [true, false, 990n]);
      const who = await client.executeOnShard({ key: from!, sql: "select current_user::text" });
      assert.equal(plainRows(who.result), [[ROUTER_ROLE]]);
    } finally {
      await router.close();
    }
  }));

test.run();
