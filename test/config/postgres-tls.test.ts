// TLS from the router to PostgreSQL, with the server's certificate verified. The servers here accept
// the router's role over TLS only (hostssl in their pg_hba.conf), so a connection the router opened
// in plaintext would fail. Checked through the router: its statement connections, its health probe,
// the catalog, a shard registered with AddShard, the resharder's connections, and a cancel request.
// A server certificate from another CA, or for another name, is refused; so are libpq-style modes.
import { chmodSync, chownSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import postgres from "postgres";
import * as assert from "uvu/assert";
import { AdminService } from "../../gen/shardrouter/v1/admin_pb.js";
import { RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import { definitionOf } from "../../server/catalog/shard-registry.js";
import { toConnectError } from "../../server/execution/postgres-errors.js";
import { ConfigError, parseConfig, shardLoginOf } from "../../server/config/config.js";
import { PostgresTls } from "../../server/config/postgres-tls.js";
import { postgresOsUser } from "../../server/dev-cluster/pg-install.js";
import { resharderNode } from "../../server/resharding/job-runner.js";
import { nodeClient } from "../../server/resharding/node-client.js";
import { startRouter } from "../../server/router.js";
import { type Certificates, certificates } from "../auth/fixtures.js";
import { plainRows } from "../e2e/values.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";

const CLIENT = "tlsclient"; // a login that may only log in with a client certificate (hba `cert`)
let certs: Certificates;
let t: TestRouter;

// The cluster's own setup connects as `postgres` in plaintext; everyone else needs TLS.
const hba = `
hostnossl all         postgres    127.0.0.1/32 scram-sha-256
hostnossl replication postgres    127.0.0.1/32 scram-sha-256
hostssl   all         ${CLIENT}   127.0.0.1/32 cert
hostssl   all         all         127.0.0.1/32 scram-sha-256
`;

test.before(hook(async () => {
  certs = certificates([CLIENT]);
  // The postgres OS user reads the server's files by path (o+x on the folder, no listing); its key
  // must be its own and 0600, or Postgres refuses to start.
  const runAs = await postgresOsUser();
  chmodSync(certs.dir, 0o711);
  chmodSync(certs.serverKey, 0o600);
  if (runAs.uid !== undefined) chownSync(certs.serverKey, runAs.uid, runAs.gid!);
  const hbaFile = join(certs.dir, "pg_hba.conf");
  writeFileSync(hbaFile, hba, { mode: 0o644 });
  t = await startTestRouter({
    shards: 2, unconfiguredShards: 1, // shard-1 runs, unknown to the router: AddShard registers it
    serverSettings: { ssl: "on", ssl_cert_file: certs.serverCert, ssl_key_file: certs.serverKey, ssl_ca_file: certs.ca, hba_file: hbaFile },
    ssl: { caFile: certs.ca },
  });
  await t.direct(t.cluster.shards[0].nodes[0]).unsafe(`create role ${CLIENT} login in role ${t.cluster.routerRole.user}`);
}));
test.after(hook(async () => {
  await t?.stop();
  certs?.cleanup();
}));

const primary = () => t.cluster.shards[0].nodes[0];
const passwords = () => [t.cluster.routerRole.password, primary().password];
const failure = (p: Promise<unknown>) => p.then(() => { throw new Error("expected a failure"); }, (e) => ConnectError.from(e));
const sslOfBackend = "select ssl, coalesce(client_dn, '') as client_dn from pg_stat_ssl where pid = pg_backend_pid()";

/**
 * A router without a catalog over shard-0's primary, its node's connection overridden by `node`;
 * `log` holds its log lines (default level: what an operator sees).
 */
async function routerWith(node: Record<string, unknown>) {
  const p = primary();
  const log: string[] = [];
  const router = await startRouter(parseConfig({
    listen: { port: 0 },
    shards: [{ name: "shard-0", nodes: [{ name: "shard-0-primary", host: p.host, port: p.port, database: p.database, ...t.cluster.routerRole, ...node }] }],
  }), { log: (line) => log.push(line) });
  // No keep-alive: an idle client connection would hold router.close() for seconds.
  const client = createClient(RouterService, createConnectTransport({ baseUrl: router.url, httpVersion: "1.1", nodeOptions: { agent: new http.Agent({ keepAlive: false }) } }));
  return { router, client, log };
}

/** The caller gets UNAVAILABLE; the log says why (`reason`); neither holds a password. */
async function refused(r: Awaited<ReturnType<typeof routerWith>>, reason: string | RegExp): Promise<void> {
  const err = await failure(r.client.executeOnShard({ key: "k", sql: "select 1" }));
  assert.is(err.code, Code.Unavailable, err.message);
  const down = r.log.find((line) => line.includes('"shard-0-primary"') && line.includes('"down"'));
  assert.ok(down, `no log line says the node is down: ${r.log.join("\n")}`);
  assert.match(down, reason);
  const said = JSON.stringify([err.message, String(err.cause ?? ""), ...r.log]);
  for (const p of passwords()) assert.not.ok(said.includes(p), "a password leaked");
}

function configError(raw: unknown): string {
  try {
    parseConfig(raw, "test.json");
  } catch (err) {
    assert.instance(err, ConfigError);
    return (err as Error).message;
  }
  throw new Error("expected the config to be refused");
}

const node = { host: "127.0.0.1", port: 5432, database: "db", user: "u", password: "secret-pw" };
const withSsl = (ssl: unknown) => ({ shards: [{ name: "s0", nodes: [{ ...node, ssl }] }] });

test("libpq-style modes are refused, saying why and what to write instead", () => {
  for (const mode of ["require", "prefer", "allow"]) {
    const message = configError(withSsl(mode));
    assert.match(message, `shards[0].nodes[0].ssl: "${mode}" is refused`);
    assert.match(message, "rejectUnauthorized: false");
    assert.match(message, "never checked");
    assert.match(message, '{ "caFile": ');
    assert.not.match(message, "secret-pw");
  }
  for (const mode of [true, false, "disable", "verify-full", "on"]) {
    assert.match(configError(withSsl(mode)), `shards[0].nodes[0].ssl: ${JSON.stringify(mode)} is refused`);
  }
  assert.match(configError({ ...withSsl(undefined), catalog: { ...node, ssl: "require" } }), 'catalog.ssl: "require" is refused');
  assert.match(configError({ ...withSsl(undefined), shardLogin: { user: "u", ssl: "prefer" } }), 'shardLogin.ssl: "prefer" is refused');
});

test("ssl's files are read at parse time: a missing or unusable file names the field, never a key", () => {
  assert.match(configError(withSsl({ caFile: "/nonexistent/ca.pem" })), "shards[0].nodes[0].ssl.caFile: cannot read /nonexistent/ca.pem: ENOENT");
  assert.match(configError(withSsl({ caFile: certs.serverKey })), `shards[0].nodes[0].ssl.caFile: ${certs.serverKey} holds no PEM certificate`);
  const client = certs.clientFiles(CLIENT);
  assert.match(configError(withSsl({ caFile: certs.ca, certFile: client.certFile })), "shards[0].nodes[0].ssl.keyFile: a client certificate needs both certFile and keyFile");
  assert.match(configError(withSsl({ caFile: certs.ca, keyFile: client.keyFile })), "shards[0].nodes[0].ssl.certFile: a client certificate needs both");
  const mismatch = configError(withSsl({ caFile: certs.ca, certFile: client.certFile, keyFile: certs.serverKey }));
  assert.match(mismatch, "shards[0].nodes[0].ssl.certFile: cannot use");
  assert.not.match(mismatch, "PRIVATE KEY");
  assert.match(configError(withSsl({ caFile: certs.ca, sslmode: "verify-full" })), 'Unrecognized key: "sslmode"');
  assert.match(configError({ ...withSsl(undefined), shardLogin: { user: "u", ssl: { caFile: certs.ca, serverName: "x" } } }), 'shardLogin.ssl: Unrecognized key: "serverName"');

  const parsed = parseConfig(withSsl({ caFile: certs.ca, serverName: "db.internal", ...client }));
  const ssl = parsed.shards[0].nodes[0].ssl!;
  assert.instance(ssl, PostgresTls);
  assert.equal(JSON.parse(JSON.stringify(ssl)), { caFile: certs.ca, serverName: "db.internal", ...client }, "only paths show");
  assert.equal(parseConfig(parsed).shards[0].nodes[0].ssl?.serverName, "db.internal", "a parsed config parses again (main.ts does)");
  const options = ssl.connectionOptions("10.0.0.9");
  assert.is(options.rejectUnauthorized, true);
  assert.is(options.servername, "db.internal");
  assert.is(ssl.withoutServerName().connectionOptions("10.0.0.9").servername, undefined, "no SNI for an address");
});

test("shards registered with AddShard get the shard login's TLS, or the first primary's, never its serverName", () => {
  const base = withSsl({ caFile: certs.ca, serverName: "db0.internal" });
  const inherited = shardLoginOf(parseConfig(base));
  assert.instance(inherited.ssl, PostgresTls);
  assert.is(inherited.ssl!.caFile, certs.ca);
  assert.is(inherited.ssl!.serverName, undefined);
  const explicit = shardLoginOf(parseConfig({ ...base, shardLogin: { user: "other", ssl: { caFile: certs.otherCa } } }));
  assert.is(explicit.ssl!.caFile, certs.otherCa);
  // A shardLogin without ssl still gets the first primary's: registered shards never get less TLS.
  assert.is(shardLoginOf(parseConfig({ ...base, shardLogin: { user: "other" } })).ssl!.caFile, certs.ca);
  assert.is(shardLoginOf(parseConfig(withSsl(undefined))).ssl, undefined);
  const def = definitionOf({ name: "s9", weight: 1, nodes: [{ name: "s9-primary", host: "db9.internal", port: 5432, database: "db", role: "primary" }] }, inherited);
  assert.is(def.nodes[0].ssl, inherited.ssl);
});

test("without TLS the router's role is refused by these servers (so the checks below can fail)", async () => {
  const p = primary();
  const plain = postgres({ host: p.host, port: p.port, database: p.database, ...t.cluster.routerRole, max: 1, onnotice: () => {} });
  try {
    const err = await plain`select 1`.then(() => undefined, (e: { code?: string; message?: string }) => e);
    assert.is(err?.code, "28000");
    assert.match(String(err?.message), "no encryption");
  } finally {
    await plain.end({ timeout: 1 });
  }
});

test("every connection of the router (statements, health probe, catalog) is TLS, verified by the configured CA", async () => {
  const res = await t.connect.executeOnShard({ key: "k", sql: sslOfBackend });
  assert.equal(plainRows(res.result), [[true, ""]]);
  for (const [n, names] of [[primary(), ["shardrouter", "shardrouter-health"]], [t.cluster.catalog, ["shardrouter-catalog"]]] as const) {
    const backends = await t.direct(n)<{ app: string; ssl: boolean }[]>`
      select a.application_name as app, s.ssl from pg_stat_activity a join pg_stat_ssl s using (pid)
      where a.usename = ${t.cluster.routerRole.user}`;
    for (const name of names) assert.ok(backends.some((b) => b.app === name), `${n.name}: no ${name} connection`);
    assert.ok(backends.length > 0 && backends.every((b) => b.ssl), `${n.name}: ${JSON.stringify(backends)}`);
  }
});

test("a shard registered with AddShard is probed and served over TLS", async () => {
  const added = t.cluster.shards[1].nodes[0];
  const admin = createClient(AdminService, createConnectTransport({ baseUrl: t.router.url, httpVersion: "1.1" }));
  await admin.addShard({ name: "shard-1", nodes: [{ host: added.host, port: added.port, database: added.database, role: "primary" }] });
  const backends = await waitFor("the router's health probe on the registered shard", async () => {
    const rows = await t.direct(added)<{ app: string; ssl: boolean }[]>`
      select a.application_name as app, s.ssl from pg_stat_activity a join pg_stat_ssl s using (pid)
      where a.usename = ${t.cluster.routerRole.user}`;
    return rows.some((r) => r.app === "shardrouter-health") ? rows : undefined;
  });
  assert.ok(backends.every((b) => b.ssl), JSON.stringify(backends));
});

test("the resharder's connections use the node's TLS with its own login", async () => {
  const node = resharderNode(t.config, t.router.planner.shards, "shard-0");
  assert.is(node.user, "postgres"); // resharding.user: the cluster's admin, not the router's role
  const sql = nodeClient(node);
  try {
    const [row] = await sql.unsafe(sslOfBackend);
    assert.is(row.ssl, true);
  } finally {
    await sql.end({ timeout: 1 });
  }
});

test("a client certificate logs in where the server asks for one; without it the login is refused", async () => {
  const withCert = await routerWith({ user: CLIENT, password: undefined, ssl: { caFile: certs.ca, ...certs.clientFiles(CLIENT) } });
  try {
    const res = await withCert.client.executeOnShard({ key: "k", sql: sslOfBackend });
    assert.equal(plainRows(res.result), [[true, `/CN=${CLIENT}`]]);
  } finally {
    await withCert.router.close();
  }
  const without = await routerWith({ user: CLIENT, password: undefined, ssl: { caFile: certs.ca } });
  try {
    await refused(without, "connection requires a valid client certificate");
  } finally {
    await without.router.close();
  }
});

test("a server certificate from another CA is refused: UNAVAILABLE, the log says why, no password anywhere", async () => {
  const r = await routerWith({ ssl: { caFile: certs.otherCa } });
  try {
    await refused(r, /TLS failed: .*certificate.*\((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\)/);
  } finally {
    await r.router.close();
  }
  // With the catalog's certificate refused, the router does not start.
  const catalog = { ...t.config.catalog!, ssl: { caFile: certs.otherCa } };
  const failed = await startRouter(parseConfig({ ...(t.config as object), listen: { port: 0 }, catalog }))
    .then((router) => router.close().then(() => undefined), (e: Error) => e);
  assert.ok(failed, "the router started with a catalog whose certificate it cannot verify");
  assert.match(failed.message, "certificate");
  for (const p of passwords()) assert.not.ok(failed.message.includes(p), "a password leaked");
});

test("a certificate for another name is refused, whether the host is an address or a DNS name", async () => {
  // node-postgres replaces `servername` with a DNS host: serverName must be checked all the same.
  for (const host of ["127.0.0.1", "localhost"]) {
    const r = await routerWith({ host, ssl: { caFile: certs.ca, serverName: "db.example.com" } });
    try {
      await refused(r, /TLS failed: .*db\.example\.com/);
      // The pool's own connections (node-postgres), not just the health probe (postgres.js): refused
      // too, and told to a caller as such.
      const pool = r.router.planner.shards.shards[0].nodes[0];
      const err = await pool.start("select 1", [], () => {}).done.then(() => undefined, (e: Error & { code?: string }) => e);
      assert.is(err?.code, "ERR_TLS_CERT_ALTNAME_INVALID", String(err));
      const told = toConnectError(err, { shard: "shard-0", node: pool.name, address: pool.address });
      assert.is(told.code, Code.Unavailable);
      assert.match(told.rawMessage, /is unavailable: TLS failed: Hostname\/IP does not match .*db\.example\.com/);
    } finally {
      await r.router.close();
    }
  }
  // The name the certificate does carry, for an address host: accepted.
  const { router, client } = await routerWith({ ssl: { caFile: certs.ca, serverName: "localhost" } });
  try {
    assert.equal(plainRows((await client.executeOnShard({ key: "k", sql: "select ssl from pg_stat_ssl where pid = pg_backend_pid()" })).result), [[true]]);
  } finally {
    await router.close();
  }
});

test("every connection the router opens starts with TLS, the cancel request of a statement past its deadline too", async () => {
  // A TCP relay in front of the node records each connection's first message: an SSLRequest
  // (80877103), a CancelRequest in the clear (80877102) or a startup packet.
  const p = primary();
  const firsts: number[] = [];
  const relay = net.createServer((inbound) => {
    const outbound = net.connect(p.port, p.host);
    inbound.on("error", () => outbound.destroy());
    outbound.on("error", () => inbound.destroy());
    inbound.once("data", (chunk) => {
      firsts.push(chunk.length >= 8 ? chunk.readUInt32BE(4) : -1);
      outbound.write(chunk);
      inbound.pipe(outbound);
    });
    outbound.pipe(inbound);
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
  const { router, client } = await routerWith({ port: (relay.address() as net.AddressInfo).port, ssl: { caFile: certs.ca } });
  try {
    assert.equal(plainRows((await client.executeOnShard({ key: "k", sql: sslOfBackend })).result), [[true, ""]]);
    const err = await failure(client.executeOnShard({ key: "k", sql: "select pg_sleep(30), 'tls-cancel-probe'" }, { timeoutMs: 300 }));
    assert.is(err.code, Code.DeadlineExceeded);
    // Only a cancel request ends pg_sleep this soon, and the relay is the only way the router knows to the node.
    await waitFor("the sleeping statement to be cancelled", async () => {
      const [{ n }] = await t.direct(p)`select count(*)::int as n from pg_stat_activity
        where query like '%tls-cancel-probe%' and state = 'active' and pid <> pg_backend_pid()`;
      return n === 0 ? true : undefined;
    }, 4000);
    assert.ok(firsts.length >= 3, `connections seen: ${firsts.length}`); // statements, the health probe, the cancel
    assert.ok(firsts.every((code) => code === 80877103), `first messages: ${firsts.join(", ")}`);
  } finally {
    await router.close();
    relay.close();
  }
});

test.run();
