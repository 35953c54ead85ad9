// Authorization: each identity's SQL runs as its own Postgres login (one pool per role and node), so
// Postgres enforces its grants; its RPC rights are checked by the router, AdminService included; a
// noisy identity at its cap is refused while another is served; and nothing said to a caller or
// written to the log carries a token, a key or a password.
import { Code } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import { AdminService } from "../../gen/shardrouter/v1/admin_pb.js";
import { PostgresErrorDetailSchema } from "../../gen/shardrouter/v1/errors_pb.js";
import { RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import { ensureReaderRole, READER_ROLE } from "../../server/dev-cluster/dev-auth.js";
import { ROUTER_ROLE } from "../../server/dev-cluster/router-role.js";
import { accountsOnShards, seedAccounts } from "../harness/accounts.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { test } from "../harness/uvu.js";
import { plainRows } from "../e2e/values.js";
import { apiKey, assertCode, clientFor, ensureRole, jwtKeys, type Keys, protocols, audience, issuer } from "./fixtures.js";

let t: TestRouter;
let keys: Keys;
const ops = apiKey("ops");
const reader = apiKey("reader");
const orders = apiKey("orders");
const noisy = apiKey("noisy");
const wrongLogin = apiKey("wronglogin");
const readerPassword = "reader-Pa55-0193";
const ordersPassword = "orders-Pa55-7734";
const badPassword = "not-the-Pa55-4410";
const lines: string[] = [];
let authConfig: { identities: { name: string; [k: string]: unknown }[]; [k: string]: unknown };
const str = (value: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value } });
const readRights = ["RouterService/Route", "RouterService/ExecuteOnShard", "RouterService/ExecuteOnAll", "RouterService/GetTopology"];

test.before(async () => {
  keys = await jwtKeys();
  t = await startTestRouter({
    shards: 3,
    log: (line) => lines.push(line),
    logLevel: "debug", // every access line and every refusal
    auth: async (cluster) => {
      for (const s of cluster.shards) {
        const admin = cluster.shards.find((x) => x.name === s.name)!.nodes[0];
        const postgres = (await import("postgres")).default;
        const sql = postgres({ host: admin.host, port: admin.port, database: admin.database, user: admin.user, password: admin.password, max: 1, onnotice: () => {} });
        try {
          await ensureReaderRole(sql, readerPassword, admin.database, admin.user);
          await ensureRole(sql, "orders_rw", ordersPassword, "select, insert, update");
        } finally {
          await sql.end({ timeout: 5 });
        }
      }
      return authConfig = {
        jwt: { issuer, audience, algorithms: ["RS256"], jwksFile: keys.jwksFile },
        identities: [
          { name: "ops", apiKeys: [{ id: "ops", sha256: ops.sha256 }], login: "router", rpcs: ["*"] },
          { name: "reader", apiKeys: [{ id: "reader", sha256: reader.sha256 }], login: { user: READER_ROLE, password: readerPassword }, rpcs: readRights },
          { name: "orders", apiKeys: [{ id: "orders", sha256: orders.sha256 }], jwtSubjects: ["orders"], login: { user: "orders_rw", password: ordersPassword }, rpcs: ["RouterService/*"] },
          { name: "noisy", apiKeys: [{ id: "noisy", sha256: noisy.sha256 }], login: { user: "orders_rw", password: ordersPassword }, rpcs: ["RouterService/*"], maxConcurrent: 2 },
          { name: "wrong-login", apiKeys: [{ id: "wl", sha256: wrongLogin.sha256 }], login: { user: "orders_rw", password: badPassword }, rpcs: ["RouterService/*"] },
        ],
      };
    },
  });
  await seedAccounts(t, 30, 100);
  // accounts came after the roles: the reader's default privileges covered it, orders_rw gets it now.
  for (const s of t.cluster.shards) await ensureRole(t.direct(s.nodes[0]), "orders_rw", ordersPassword, "select, insert, update");
});
test.after(async () => {
  await t?.stop();
  keys?.cleanup();
});

const as = (token: string, protocol: (typeof protocols)[number] = "grpc") => clientFor(RouterService, t.router.url, protocol, { token });

test("each identity's SQL runs as its own login: one pool per role and node", async () => {
  const who = async (token: string) => plainRows((await as(token).executeOnAll({ sql: "select current_user::text, session_user::text" })).result);
  for (const row of await who(ops.key)) assert.equal(row, [ROUTER_ROLE, ROUTER_ROLE]);
  for (const row of await who(reader.key)) assert.equal(row, [READER_ROLE, READER_ROLE]);
  for (const row of await who(orders.key)) assert.equal(row, ["orders_rw", "orders_rw"]);
  const jwt = await keys.sign({ sub: "orders" });
  for (const row of await who(jwt)) assert.equal(row, ["orders_rw", "orders_rw"]);
  for (const s of t.cluster.shards) {
    const roles = await t.direct(s.nodes[0])<{ usename: string }[]>`select distinct usename::text from pg_stat_activity where application_name = 'shardrouter'`;
    const names = roles.map((r) => r.usename);
    for (const role of [ROUTER_ROLE, READER_ROLE, "orders_rw"]) assert.ok(names.includes(role), `${s.name} has a connection as ${role}: ${names}`);
  }
});

test("the read-only identity reads, and Postgres refuses its writes: permission_denied with SQLSTATE 42501", async () => {
  const rows = plainRows((await as(reader.key).executeOnShard({ key: "acct-1", sql: "select balance from accounts where id = $1", params: [str("acct-1")] })).result);
  assert.equal(rows, [[100n]]);
  for (const protocol of protocols) {
    const err = await assertCode(as(reader.key, protocol).executeOnShard({ key: "acct-1", sql: "update accounts set balance = 0 where id = $1", params: [str("acct-1")] }), Code.PermissionDenied, protocol);
    assert.is(err.findDetails(PostgresErrorDetailSchema)[0]?.sqlstate, "42501");
  }
});

test("every escalation the read-only identity tries fails on every shard, and nothing changes", async () => {
  const before = await accountsOnShards(t);
  // Another request's prepared transaction, left by a router as a crash would leave it.
  const s0 = t.cluster.shards[0].nodes[0];
  const gid = "sr_escalation_0_h736861726430";
  await t.asRouter(s0).begin(async (tx) => { await tx`insert into accounts values ('prepared-by-router', 5)`; await tx.unsafe(`prepare transaction '${gid}'`); }).catch(() => {});
  const attempts: [string, Code][] = [
    ["set role shardrouter_router", Code.InvalidArgument],
    ["set role postgres", Code.InvalidArgument],
    ["reset role", Code.InvalidArgument],
    ["set session authorization postgres", Code.InvalidArgument],
    ["select set_config('role', 'shardrouter_router', false)", Code.InvalidArgument],
    ["select set_config('role', 'shardrouter_router', true)", Code.InvalidArgument],
    ["select set_config('shardrouter.epoch', '999999', true)", Code.InvalidArgument],
    ["begin read write", Code.InvalidArgument],
    ["begin read write; insert into accounts values ('escalated', 1)", Code.InvalidArgument],
    ["insert into accounts values ('escalated', 1)", Code.PermissionDenied],
    ["create function public.escalate() returns int language sql security definer as 'select 1'", Code.PermissionDenied],
    ["copy accounts to program 'touch /tmp/shardrouter-escalated'", Code.InvalidArgument],
    ["alter role shardrouter_reader superuser", Code.PermissionDenied],
    ["alter role shardrouter_reader bypassrls", Code.PermissionDenied],
    ["select 1; delete from accounts", Code.InvalidArgument],
    [`rollback prepared '${gid}'`, Code.InvalidArgument],
    [`commit prepared '${gid}'`, Code.InvalidArgument],
    ["delete from accounts", Code.PermissionDenied],
    ["truncate accounts", Code.PermissionDenied],
    ["drop table accounts", Code.PermissionDenied],
  ];
  for (const [sql, code] of attempts) {
    await assertCode(as(reader.key).executeOnAll({ sql }), code, sql);
  }
  // A GRANT on a table it does not own is no error in Postgres (a warning, "no privileges were
  // granted"): checked below by what it would have changed.
  await as(reader.key).executeOnAll({ sql: "grant all on accounts to public" }).catch(() => {});
  // Nothing changed: money, rows, functions, grants, the role's attributes, the prepared transaction.
  const after = await accountsOnShards(t);
  assert.is(after.total, before.total);
  assert.is(after.owners.size, before.owners.size);
  for (const s of t.cluster.shards) {
    const sql = t.direct(s.nodes[0]);
    assert.equal((await sql`select count(*)::int as n from pg_proc where proname = 'escalate'`)[0].n, 0, s.name);
    assert.equal((await sql`select rolsuper, rolbypassrls from pg_roles where rolname = ${READER_ROLE}`)[0], { rolsuper: false, rolbypassrls: false });
    assert.equal((await sql`select has_table_privilege('public', 'accounts', 'insert') as p`)[0].p, false, `${s.name}: nothing granted to public`);
  }
  const prepared = await t.direct(s0)`select count(*)::int as n from pg_prepared_xacts where gid = ${gid}`;
  assert.is(prepared[0].n, 1, "the other request's prepared transaction is untouched");
  await t.direct(s0).unsafe(`rollback prepared '${gid}'`);
});

test("RPC rights are enforced, AdminService included: permission_denied for an identified caller without the right", async () => {
  for (const protocol of protocols) {
    await assertCode(as(reader.key, protocol).transfer({ fromKey: "acct-1", toKey: "acct-2", amount: 1n, requestId: "r-1" }), Code.PermissionDenied, protocol);
    await assertCode(as(reader.key, protocol).executeTransaction({ requestId: "r-2", statements: [{ key: "acct-1", sql: "select 1" }] }), Code.PermissionDenied, protocol);
    const readerAdmin = clientFor(AdminService, t.router.url, protocol, { token: reader.key });
    const err = await assertCode(readerAdmin.listReshards({}), Code.PermissionDenied, protocol);
    assert.match(err.rawMessage, 'identity "reader" may not call shardrouter.v1.AdminService/ListReshards');
    await assertCode(clientFor(AdminService, t.router.url, protocol, { token: orders.key }).startReshard({ addShards: [{ name: "shard-2", weight: 1 }] }), Code.PermissionDenied, protocol);
  }
  const jobs = await clientFor(AdminService, t.router.url, "grpc", { token: ops.key }).listReshards({});
  assert.equal(jobs.reshards, []);
  // The orders identity may transfer, as its own role.
  const res = await as(orders.key).transfer({ fromKey: "acct-1", toKey: "acct-2", amount: 5n, requestId: "orders-1" });
  assert.is(res.fromBalance, 95n);
  // The same request id from another identity is another request: refused, never the first one's answer.
  await assertCode(as(noisy.key).transfer({ fromKey: "acct-1", toKey: "acct-2", amount: 5n, requestId: "orders-1" }), Code.FailedPrecondition, "another identity's request id");
});

test("a noisy identity at its cap gets resource_exhausted; another identity goes on being served", async () => {
  const sleeps = [1, 2].map((i) => new AbortController());
  const running = sleeps.map((c, i) => as(noisy.key).executeOnShard({ key: `acct-${i}`, sql: `select pg_sleep(30), 'noisy-${i}'` }, { signal: c.signal }).catch((e) => e));
  await waitFor("both noisy statements to run", async () => {
    let n = 0;
    for (const s of t.cluster.shards) n += (await t.direct(s.nodes[0])`select count(*)::int as n from pg_stat_activity where query like '%noisy-%' and state = 'active' and pid <> pg_backend_pid()`)[0].n;
    return n === 2 || undefined;
  });
  for (const protocol of protocols) {
    const err = await assertCode(as(noisy.key, protocol).executeOnShard({ key: "acct-3", sql: "select 1" }), Code.ResourceExhausted, protocol);
    assert.match(err.rawMessage, "maxConcurrent");
    const other = await as(orders.key, protocol).executeOnShard({ key: "acct-3", sql: "select 1" });
    assert.is(other.result!.rows.length, 1);
  }
  for (const c of sleeps) c.abort();
  await Promise.all(running);
  // Its slots come back with its calls.
  await waitFor("the noisy identity to be served again", async () => (await as(noisy.key).executeOnShard({ key: "acct-3", sql: "select 1" }).then(() => true, () => undefined)));
});

test("a login whose password is wrong fails as unavailable or unauthenticated-at-Postgres, and says no password", async () => {
  const err = await as(wrongLogin.key).executeOnShard({ key: "acct-1", sql: "select 1" }).then(() => undefined, (e) => e);
  assert.ok(err, "refused");
  assert.not.match(String(err.message), badPassword);
  assert.not.match(String(err.message), ordersPassword);
});

test("no token, key or password in any log line", async () => {
  assert.ok(lines.some((l) => l.includes("unauthenticated") || l.includes("permission_denied")), "refusals were logged");
  const secrets = [ops.key, reader.key, orders.key, noisy.key, wrongLogin.key, readerPassword, ordersPassword, badPassword, await keys.sign({ sub: "orders" })];
  const all = lines.join("\n");
  for (const secret of secrets) assert.not.ok(all.includes(secret), `a secret (${secret.slice(0, 6)}…) appears in the log`);
  // Nor their JWT body (a token's middle part would be as telling).
  const jwt = await keys.sign({ sub: "orders" });
  assert.not.ok(all.includes(jwt.split(".")[1]), "a JWT body appears in the log");
});

test("revoking an identity on reload closes its login's connections, and its key stops working", async () => {
  const readerSessions = async () => {
    let n = 0;
    for (const s of t.cluster.shards) n += (await t.direct(s.nodes[0])`select count(*)::int as n from pg_stat_activity where usename = ${READER_ROLE} and application_name = 'shardrouter'`)[0].n;
    return n;
  };
  await as(reader.key).executeOnAll({ sql: "select 1" });
  assert.ok((await readerSessions()) > 0, "the reader has pooled connections");
  t.router.reloadAuth({ ...authConfig, identities: authConfig.identities.filter((i) => i.name !== "reader") });
  await waitFor("the reader's connections to close", async () => ((await readerSessions()) === 0 ? true : undefined));
  await assertCode(as(reader.key).executeOnAll({ sql: "select 1" }), Code.Unauthenticated, "revoked");
  await as(orders.key).executeOnAll({ sql: "select 1" }); // the others are served as before
});

test.run();
