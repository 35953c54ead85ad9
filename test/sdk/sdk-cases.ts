// The SDK's tests, written once and run in Node (test/sdk/sdk.test.ts, over Connect and over gRPC)
// and in Deno (test/sdk/deno-runner.ts) against the same router on real shards. Runtime-neutral on
// purpose: only the SDK, node:assert and fetch, which both runtimes have.
// Every run prefixes the keys it writes with its own name, so the runs never see each other's rows.
import assert from "node:assert/strict";
import {
  Code, ConnectError, createClient, date, float, json, numeric, postgresErrorOf, type ShardRouterClient,
  ShardRouterError, sqlstateOf, timestamp, uuid,
} from "../../sdk/src/index.ts";

export interface CaseContext {
  /** "node", "node-grpc" or "deno": names the run and prefixes every key it writes. */
  run: string;
  baseUrl: string;
  /** A local port nothing listens on. */
  unreachableUrl: string;
  /** A client over the run's protocol. */
  client: ShardRouterClient;
}

/** deno-runner.ts prints each outcome as this prefix and a JSON { name, ok, error? }. */
export const resultPrefix = "sdk-case ";

export interface SdkCase {
  name: string;
  fn(ctx: CaseContext): Promise<void>;
}

async function failure(p: Promise<unknown>, code: Code): Promise<ShardRouterError> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught, `expected the call to fail with ${Code[code]}`);
  assert.ok(caught instanceof ConnectError, `a ConnectError, got ${String(caught)}`);
  assert.ok(caught instanceof ShardRouterError, "a ShardRouterError");
  assert.equal(Code[caught.code], Code[code], caught.message);
  return caught;
}

/** A fetch that remembers the headers of every request it passes on. */
function recordingFetch(): { fetch: typeof fetch; headers: Headers[] } {
  const headers: Headers[] = [];
  return {
    headers,
    fetch: (input, init) => {
      headers.push(new Headers(init?.headers));
      return fetch(input, init);
    },
  };
}

/** `${prefix}-a` and the first `${prefix}-b<i>` on another shard (or on the same one), each given `balance`. */
async function twoAccounts(client: ShardRouterClient, prefix: string, balance: bigint, sameShard = false): Promise<[string, string]> {
  const a = `${prefix}-a`;
  const shardA = (await client.route(a)).shard;
  for (let i = 0; i < 200; i++) {
    const b = `${prefix}-b${i}`;
    if (((await client.route(b)).shard === shardA) !== sameShard) continue;
    for (const id of [a, b]) {
      await client.onShard(id).query(
        "insert into accounts (id, balance) values ($1, $2) on conflict (id) do update set balance = excluded.balance", [id, balance]);
    }
    return [a, b];
  }
  throw new Error("no fitting second key in 200 tries");
}

async function balancesOf(client: ShardRouterClient, ...ids: string[]): Promise<(bigint | undefined)[]> {
  return Promise.all(ids.map(async (id) => {
    const { rows } = await client.onShard(id).query<{ balance: bigint }>("select balance from accounts where id = $1", [id]);
    return rows[0]?.balance;
  }));
}

const basicCases: SdkCase[] = [
  {
    name: "route(): shard, keyspace id, strategy and nodes; an integer key is its decimal text",
    async fn({ client }) {
      const r = await client.route("acct-1");
      assert.equal(r.strategy, "hash_ring");
      assert.equal(typeof r.keyspaceId, "number");
      assert.equal(r.shardMapVersion, 1n);
      assert.equal(r.nodes[0].role, "primary");
      assert.match(r.nodes[0].address, /^127\.0\.0\.1:\d+$/);
      const [n, b, s] = await Promise.all([client.route(4242), client.route(4242n), client.route("4242")]);
      assert.deepEqual([n.keyspaceId, b.keyspaceId], [s.keyspaceId, s.keyspaceId]);
      assert.notEqual(s.keyspaceId, r.keyspaceId);
    },
  },
  {
    name: "onShard().query(): a row by bound parameter, from the shard route() names",
    async fn({ client }) {
      const res = await client.onShard("acct-1").query("select id, balance from accounts where id = $1", ["acct-1"]);
      assert.deepEqual(res.rows, [{ id: "acct-1", balance: 1000n }]);
      assert.deepEqual(res.columns.map((c) => `${c.name}:${c.type}`), ["id:text", "balance:int8"]);
      assert.equal(res.command, "SELECT");
      assert.equal(res.rowsAffected, 1);
      assert.equal(res.shard, (await client.route("acct-1")).shard);
    },
  },
  {
    name: "every supported type goes out as a parameter and comes back as the same JS value",
    async fn({ client }) {
      const bytes = new Uint8Array([0, 1, 127, 128, 255]);
      const when = new Date("2024-05-01T12:34:56.789Z");
      const doc = { a: [1, "x", null], b: { c: true }, "ü": "ß" };
      const id = "0e0f6b1c-3c43-4bde-9a3d-2b8c1d4f5e6a";
      const { rows: [row] } = await client.onShard("types").query(
        `select $1::int8 as i8, $2::int4 as i4, $3::float8 as f, $4::float8 as f_int, $5::numeric as n, $6::text as t,
                $7::bool as b, $8::bytea as by, $9::timestamptz as ts, $10::jsonb as j, $11::jsonb as j_arr, $12::date as d,
                $13::uuid as u, $14::int8[] as i8s, $15::text[] as texts, $16::int4[] as grid, $17::text as nul,
                $18::text as undef, $19::float8 as nan, $20::date as d2, $21::uuid as u_text, $22::text[] as empty`,
        [
          9007199254740993n, 42, 1.5, float(2), numeric("12345678901234567890.000000001"), "héllo ✓ \"quoted\"",
          true, bytes, when, doc, json([1, 2, 3]), date("2024-02-29"),
          uuid(id), [1n, -2n], ["a", "b,c", 'q"uote', "NULL", ""], [[1, 2], [3, 4]], null,
          undefined, NaN, date(new Date("2023-12-31T23:59:59Z")), id, [],
        ]);
      assert.deepEqual(row, {
        i8: 9007199254740993n, i4: 42, f: 1.5, f_int: 2, n: "12345678901234567890.000000001", t: "héllo ✓ \"quoted\"",
        b: true, by: bytes, ts: when, j: doc, j_arr: [1, 2, 3], d: "2024-02-29",
        u: id, i8s: [1n, -2n], texts: ["a", "b,c", 'q"uote', "NULL", ""], grid: [[1, 2], [3, 4]], nul: null,
        undef: null, nan: NaN, d2: "2023-12-31", u_text: id, empty: [],
      });
      assert.ok(row.by instanceof Uint8Array && row.ts instanceof Date);
    },
  },
  {
    name: "timestamps: Date by default (ms, truncated), RFC 3339 text with microseconds on request; json as text",
    async fn({ client }) {
      const sql = "select '2024-05-01 12:00:00.123999+00'::timestamptz as t, $1::timestamptz as p, '{\"big\": 12345678901234567890}'::json as j";
      const params = [timestamp("2024-05-01T14:00:00.654321+02:00")];
      const asDate = await client.onShard("ts").query(sql, params);
      assert.deepEqual(asDate.rows[0].t, new Date("2024-05-01T12:00:00.123Z"));
      assert.deepEqual(asDate.rows[0].p, new Date("2024-05-01T12:00:00.654Z"));
      const asText = await client.onShard("ts").query(sql, params, { decode: { timestamps: "string", json: "text" } });
      assert.deepEqual(asText.rows[0], { t: "2024-05-01T12:00:00.123999Z", p: "2024-05-01T12:00:00.654321Z", j: "{\"big\": 12345678901234567890}" });
    },
  },
  {
    name: "rows written with typed and untyped parameters read back from a table on the key's shard",
    async fn({ client, run }) {
      const table = `sdk_items_${run.replace(/-/g, "_")}`;
      const shard = client.onShard(`${run}-items`);
      await shard.query(`create table if not exists ${table} (id uuid primary key, doc jsonb, day date, at timestamptz, qty int4, price numeric(10,2), tags text[])`);
      await shard.query(`truncate ${table}`);
      const written = await shard.query(
        `insert into ${table} values ($1, $2, $3, $4, $5, $6, $7) returning id, doc, day, at, qty, price, tags`,
        ["6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f", { sku: "x-1", n: 2 }, "2024-07-04", new Date("2024-07-04T08:00:00Z"), 3, numeric("19.9"), ["red", "small"]]);
      assert.equal(written.command, "INSERT");
      assert.equal(written.rowsAffected, 1);
      assert.deepEqual(written.rows, [{
        id: "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f", doc: { sku: "x-1", n: 2 }, day: "2024-07-04",
        at: new Date("2024-07-04T08:00:00Z"), qty: 3, price: "19.90", tags: ["red", "small"],
      }]);
      assert.deepEqual(written.columns.map((c) => c.type), ["uuid", "jsonb", "date", "timestamptz", "int4", "numeric", "_text"]);
    },
  },
  {
    name: "all(): count and sum re-aggregated over every shard",
    async fn({ client }) {
      const res = await client.all("select count(*) as n, sum(balance) as total from accounts where id like 'acct-%'", [], {
        aggregates: { n: "count", total: "sum" },
      });
      assert.deepEqual(res.rows, [{ n: 1000n, total: "1000000" }]);
      assert.equal(res.shards.length, 4);
      assert.ok(res.shards.every((s) => s.rowCount === 1 && s.error === undefined && s.elapsedMs >= 0));
    },
  },
  {
    name: "all(): ORDER BY … LIMIT/OFFSET merged k-way, GROUP BY and AVG re-aggregated",
    async fn({ client }) {
      const top = await client.all("select id from accounts where id like 'acct-%' order by id desc limit $1", [5], { orderBy: "id desc", limit: 3, offset: 2 });
      assert.deepEqual(top.rows.map((r) => r.id), ["acct-997", "acct-996", "acct-995"]);
      const objects = await client.all("select id, balance from accounts where id like 'acct-%' order by balance desc, id limit 2", [], {
        orderBy: [{ column: "balance", descending: true }, "id asc nulls last"], limit: 2n,
      });
      assert.deepEqual(objects.rows, [{ id: "acct-0", balance: 1000n }, { id: "acct-1", balance: 1000n }]);
      const grouped = await client.all("select balance, count(*) as n, sum(balance) as s from accounts where id like 'acct-%' group by balance", [], {
        groupBy: "balance", aggregates: { n: "count", s: "sum", avg_balance: { avg: { sum: "s", count: "n" } } },
      });
      assert.equal(grouped.rows.length, 1);
      assert.equal(grouped.rows[0].balance, 1000n);
      assert.equal(grouped.rows[0].n, 1000n);
      assert.equal(Number(grouped.rows[0].avg_balance), 1000);
    },
  },
  {
    name: "all(): allowPartial reports the failing shards and keeps the others' rows; without it the call fails",
    async fn({ client, run }) {
      const table = `sdk_partial_${run.replace(/-/g, "_")}`;
      const owner = await client.onShard(`${run}-partial`).query(`create table if not exists ${table} (x int)`);
      const partial = await client.all(`select count(*) as n from ${table}`, [], { allowPartial: true });
      assert.deepEqual(partial.rows, [{ n: 0n }]);
      const failed = partial.shards.filter((s) => s.error);
      assert.equal(failed.length, 3);
      assert.ok(failed.every((s) => s.shard !== owner.shard && s.error?.code === Code.InvalidArgument && s.error.sqlstate === "42P01"));
      const err = await failure(client.all(`select count(*) as n from ${table}`), Code.InvalidArgument);
      assert.equal(err.sqlstate, "42P01");
    },
  },
  {
    name: "errors: Postgres rejections carry code, SQLSTATE and Postgres' fields",
    async fn({ client }) {
      const dup = await failure(client.onShard("acct-1").query("insert into accounts (id, balance) values ($1, 0)", ["acct-1"]), Code.AlreadyExists);
      assert.equal(dup.sqlstate, "23505");
      assert.equal(sqlstateOf(dup), "23505");
      assert.equal(dup.postgres?.constraint, "accounts_pkey");
      assert.equal(dup.postgres?.table, "accounts");
      assert.equal(dup.postgres?.shard, (await client.route("acct-1")).shard);
      assert.deepEqual(postgresErrorOf(dup), dup.postgres);

      const check = await failure(client.onShard("acct-2").query("update accounts set balance = -1 where id = $1", ["acct-2"]), Code.FailedPrecondition);
      assert.equal(check.sqlstate, "23514");
      const syntax = await failure(client.onShard("acct-2").query("selec 1"), Code.InvalidArgument);
      assert.equal(syntax.sqlstate, "42601");
      const types = await failure(client.onShard("acct-2").query("select $1::int8 + 1", ["not a number"]), Code.InvalidArgument);
      assert.equal(types.sqlstate, "22P02");
      // Refused by the router itself: no Postgres error, so no SQLSTATE.
      const guarded = await failure(client.onShard("acct-2").query("begin"), Code.InvalidArgument);
      assert.equal(guarded.sqlstate, undefined);
      assert.equal(sqlstateOf(guarded), undefined);
      await failure(client.route(""), Code.InvalidArgument);
    },
  },
  {
    name: "errors: values the SDK cannot encode fail on the client with InvalidArgument, sending nothing",
    async fn({ baseUrl }) {
      const rec = recordingFetch();
      const client = createClient({ baseUrl, fetch: rec.fetch });
      const circular: Record<string, unknown> = {};
      circular.self = circular;
      class Money { constructor(readonly cents: number) {} }
      const refused: [unknown, RegExp][] = [
        [() => 1, /\$1: cannot send a function/],
        [Symbol("s"), /\$1: cannot send a symbol/],
        [new Map(), /\$1: cannot send a Map/],
        [new Money(5), /\$1: cannot send a Money/],
        [circular, /\$1: cannot be sent as JSON/],
        [{ n: 1n }, /\$1: cannot be sent as JSON/],
        [2n ** 63n, /\$1: 9223372036854775808 does not fit in int8/],
        [new Date(NaN), /\$1: Invalid Date/],
        [[1, [() => 1]], /\$1\[1\]\[0\]: cannot send a function/],
      ];
      for (const [value, message] of refused) {
        const err = await failure(client.onShard("k").query("select $1", [value as never]), Code.InvalidArgument);
        assert.match(err.message, message);
      }
      assert.throws(() => numeric("12,5"), (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument);
      assert.throws(() => numeric(0.1), /exact decimal as a string/);
      assert.throws(() => uuid("nope"), /not a uuid/);
      assert.throws(() => date("1/2/2024"), /YYYY-MM-DD/);
      assert.throws(() => timestamp("yesterday"), /RFC 3339/);
      assert.throws(() => json(undefined), /no JSON form/);
      await failure(client.all("select 1", [], { orderBy: { column: "" } }), Code.InvalidArgument);
      await failure(client.all("select 1", [], { limit: -1 }), Code.InvalidArgument);
      await failure(client.all("select 1", [], { aggregates: { n: "median" as never } }), Code.InvalidArgument);
      const auto = await failure(client.all("select 1", [], { merge: "auto", orderBy: "x", limit: 1 }), Code.InvalidArgument);
      assert.match(auto.rawMessage, /leave out orderBy, limit/);
      await failure(client.all("select 1", [], { merge: "manual" as never }), Code.InvalidArgument);
      await failure(client.execute("select 1", [], { maxReplicaLagMs: -1 }), Code.InvalidArgument);
      await failure(client.execute("select 1", [], { readPreference: "nearest" as never }), Code.InvalidArgument);
      await failure(client.execute("select $1", [new Map() as never]), Code.InvalidArgument);
      await failure(client.explain("select $1", [Symbol("s") as never]), Code.InvalidArgument);
      await failure(client.onShard("k").query("select 1", [], { readPreference: "nearest" as never }), Code.InvalidArgument);
      await failure(client.onShard(1.5).query("select 1"), Code.InvalidArgument);
      await failure(client.transfer("a", "b", 1.5), Code.InvalidArgument);
      await failure(client.transaction([{ key: "a", sql: "select $1", params: [() => 1] as never }]), Code.InvalidArgument);
      assert.equal(rec.headers.length, 0, "nothing was sent");
    },
  },
  {
    name: "deadlines: a call past timeoutMs fails with DeadlineExceeded (per call and per client)",
    async fn({ client, baseUrl }) {
      const started = Date.now();
      await failure(client.onShard("slow").query("select pg_sleep(5)", [], { timeoutMs: 300 }), Code.DeadlineExceeded);
      const hasty = createClient({ baseUrl, timeoutMs: 300 });
      await failure(hasty.onShard("slow").query("select pg_sleep(5)"), Code.DeadlineExceeded);
      assert.ok(Date.now() - started < 4000, "both calls ended near their deadlines, not after pg_sleep");
      assert.deepEqual((await hasty.onShard("fast").query("select 1 as one")).rows, [{ one: 1 }]);
    },
  },
  {
    name: "a router that cannot be reached is UNAVAILABLE",
    async fn({ unreachableUrl }) {
      const nowhere = createClient({ baseUrl: unreachableUrl });
      const err = await failure(nowhere.route("acct-1"), Code.Unavailable);
      assert.match(err.message, /router unreachable/);
    },
  },
  {
    name: "token and headers go on every call; a token function is asked each time",
    async fn({ baseUrl }) {
      const rec = recordingFetch();
      let asked = 0;
      const client = createClient({ baseUrl, fetch: rec.fetch, token: () => `t${++asked}`, headers: { "x-team": "payments" } });
      await client.route("acct-1");
      await client.onShard("acct-1").query("select 1");
      assert.deepEqual(rec.headers.map((h) => h.get("authorization")), ["Bearer t1", "Bearer t2"]);
      assert.deepEqual(rec.headers.map((h) => h.get("x-team")), ["payments", "payments"]);
      const fixed = recordingFetch();
      await createClient({ baseUrl, fetch: fixed.fetch, token: "s3cret" }).route("acct-1");
      assert.equal(fixed.headers[0].get("authorization"), "Bearer s3cret");
    },
  },
  {
    name: "protocols: gRPC-Web over fetch answers the same; gRPC needs the node entry",
    async fn({ baseUrl, client }) {
      const web = createClient({ baseUrl, protocol: "grpc-web" });
      assert.deepEqual(await web.route("acct-7"), await client.route("acct-7"));
      assert.deepEqual((await web.onShard("acct-7").query("select balance from accounts where id = $1", ["acct-7"])).rows, [{ balance: 1000n }]);
      assert.throws(() => createClient({ baseUrl, protocol: "grpc" }), /HTTP\/2.*\/node/);
      const topology = await client.topology();
      assert.equal(topology.shards.length, 4);
      assert.ok(topology.shards.every((s) => s.nodes.length === 1 && s.ownership.keyspaceFraction > 0));
    },
  },
];

/** Transfer and ExecuteTransaction (two-phase commit). */
const transactionCases: SdkCase[] = [
  {
    name: "transfer(): across shards with two-phase commit; a retry with the same requestId is replayed, not repeated",
    async fn({ client, run }) {
      const [from, to] = await twoAccounts(client, `${run}-xfer`, 100n);
      const requestId = `${run}-xfer-${Date.now()}`;
      const first = await client.transfer(from, to, 30, { requestId });
      assert.equal(first.outcome, "committed");
      assert.equal(first.twoPhase, true);
      assert.notEqual(first.fromShard, first.toShard);
      assert.deepEqual([first.fromBalance, first.toBalance, first.replayed, first.requestId], [70n, 130n, false, requestId]);
      const again = await client.transfer(from, to, 30, { requestId });
      assert.equal(again.replayed, true);
      assert.equal(again.transactionId, first.transactionId);
      assert.deepEqual(await balancesOf(client, from, to), [70n, 130n]);
    },
  },
  {
    name: "transfer(): an overdraft is FailedPrecondition, an unknown account NotFound, and nothing moves",
    async fn({ client, run }) {
      const [from, to] = await twoAccounts(client, `${run}-overdraft`, 10n);
      await failure(client.transfer(from, to, 11n), Code.FailedPrecondition);
      await failure(client.transfer(from, `${run}-nobody`, 1n), Code.NotFound);
      assert.deepEqual(await balancesOf(client, from, to), [10n, 10n]);
    },
  },
  {
    name: "transfer(): two accounts on one shard commit locally, without two-phase commit",
    async fn({ client, run }) {
      const [from, to] = await twoAccounts(client, `${run}-local`, 10n, true);
      const res = await client.transfer(from, to, 4);
      assert.deepEqual([res.outcome, res.twoPhase, res.fromShard, res.fromBalance, res.toBalance], ["committed", false, res.toShard, 6n, 14n]);
      assert.match(res.requestId, /^[0-9a-f-]{36}$/);
    },
  },
  {
    name: "transaction(): statements on two shards commit together, with one result per statement",
    async fn({ client, run }) {
      const [a, b] = await twoAccounts(client, `${run}-tx`, 5n);
      const res = await client.transaction([
        { key: a, sql: "update accounts set balance = balance + $2 where id = $1 returning balance", params: [a, 1] },
        { key: b, sql: "update accounts set balance = balance - $2 where id = $1 returning balance", params: [b, 1] },
      ]);
      assert.equal(res.outcome, "committed");
      assert.equal(res.twoPhase, true);
      assert.deepEqual(res.results.map((r) => r.rows), [[{ balance: 6n }], [{ balance: 4n }]]);
      assert.deepEqual(new Set(res.shards), new Set(res.results.map((r) => r.shard)));
      assert.deepEqual(await balancesOf(client, a, b), [6n, 4n]);
    },
  },
  {
    name: "transaction(): one failing statement rolls back every shard, and the error keeps its SQLSTATE",
    async fn({ client, run }) {
      const [a, b] = await twoAccounts(client, `${run}-txfail`, 5n);
      const err = await failure(client.transaction([
        { key: a, sql: "update accounts set balance = balance + 1 where id = $1", params: [a] },
        { key: b, sql: "insert into accounts (id, balance) values ($1, 0)", params: [b] },
      ]), Code.AlreadyExists);
      assert.equal(err.sqlstate, "23505");
      assert.deepEqual(await balancesOf(client, a, b), [5n, 5n]);
    },
  },
];

const queryShapeCases: SdkCase[] = [
  {
    name: "sql`…`: values become bound parameters, never SQL text (an injection attempt is just a value)",
    async fn({ client, run }) {
      const id = `${run}-tagged`;
      const scope = client.onShard(id);
      await scope.sql`insert into accounts (id, balance) values (${id}, ${7n}) on conflict (id) do update set balance = excluded.balance`;
      const hostile = `${id}' or '1'='1`;
      const none = await scope.sql<{ id: string }>`select id from accounts where id = ${hostile}`;
      assert.deepEqual(none.rows, [], "the quote is part of the value");
      const { rows, shard } = await scope.sql<{ id: string; balance: bigint; n: number }>`select id, balance, ${41}::int + 1 as n from accounts where id = ${id}`;
      assert.deepEqual(rows, [{ id, balance: 7n, n: 42 }]);
      assert.equal(shard, (await client.route(id)).shard);
    },
  },
  {
    name: "sql called with a plain string (not a template literal) is refused: InvalidArgument",
    async fn({ client }) {
      const scope = client.onShard("acct-1");
      const call = (scope.sql as unknown as (s: string) => Promise<unknown>)("select 1");
      const err = await failure(call, Code.InvalidArgument);
      assert.match(err.rawMessage, /tagged template/);
    },
  },
  {
    name: "rowMode \"array\": rows are values in column order; fields carry each column's name, type OID and type name",
    async fn({ client }) {
      const r = await client.onShard("acct-1").query<[string, bigint, number]>(
        "select 'a'::text as x, 2::int8 as x, 3::int4 as n", [], { rowMode: "array" });
      assert.deepEqual(r.rows, [["a", 2n, 3]], "both columns named x survive");
      assert.deepEqual(r.fields, [
        { name: "x", dataTypeID: 25, typeName: "text" }, { name: "x", dataTypeID: 20, typeName: "int8" }, { name: "n", dataTypeID: 23, typeName: "int4" },
      ]);
      const all = await client.all<[bigint]>("select 1::int8", [], { rowMode: "array" });
      assert.ok(all.rows.length >= 1 && all.rows.every((row) => Array.isArray(row) && row[0] === 1n));
    },
  },
  {
    name: "decode.types overrides how a type is parsed, by name or OID; NULL stays null; arrays by their own type name",
    async fn({ baseUrl }) {
      const client = createClient({ baseUrl, decode: { types: { int8: (v) => Number(v), "1700": (v, t) => `${t.name}:${v as string}` } } });
      const r = await client.onShard("acct-1").query("select 5::int8 as a, 1.50::numeric as b, null::int8 as c, array[1,2]::int8[] as d");
      assert.deepEqual(r.rows, [{ a: 5, b: "numeric:1.50", c: null, d: [1n, 2n] }]);
      const perCall = await client.onShard("acct-1").query("select 5::int8 as a", [], { decode: { types: { _int8: () => "unused", int8: (v) => `int8 ${v}` } } });
      assert.deepEqual(perCall.rows, [{ a: "int8 5" }], "a call's decode.types replaces the client's");
    },
  },
];

const interactiveCases: SdkCase[] = [
  {
    name: "onShard().transaction(fn): commits what fn wrote; a throw rolls back and rethrows; sql`…` inside",
    async fn({ client, run }) {
      const id = `${run}-itx`;
      const scope = client.onShard(id);
      await scope.sql`insert into accounts (id, balance) values (${id}, ${50n}) on conflict (id) do update set balance = excluded.balance`;
      const inside = await scope.transaction(async (tx) => {
        await tx.sql`update accounts set balance = balance + ${10n} where id = ${id}`;
        const { rows } = await tx.query<{ balance: bigint }>("select balance from accounts where id = $1", [id]);
        return rows[0].balance;
      });
      assert.equal(inside, 60n);
      const err = await scope.transaction(async (tx) => {
        await tx.sql`update accounts set balance = 0 where id = ${id}`;
        throw new Error("rolled back on purpose");
      }).catch((e: Error) => e);
      assert.equal((err as Error).message, "rolled back on purpose");
      assert.deepEqual((await scope.sql<{ balance: bigint }>`select balance from accounts where id = ${id}`).rows, [{ balance: 60n }]);
    },
  },
  {
    name: "a failed statement makes commit fail with Aborted; a finished transaction refuses more calls (FailedPrecondition)",
    async fn({ client, run }) {
      const id = `${run}-itx-abort`;
      const scope = client.onShard(id);
      await scope.sql`insert into accounts (id, balance) values (${id}, ${5n}) on conflict (id) do update set balance = excluded.balance`;
      const tx = await scope.begin({ isolationLevel: "serializable" });
      assert.equal(tx.shard, (await client.route(id)).shard);
      await tx.sql`update accounts set balance = 4 where id = ${id}`;
      await failure(tx.sql`select 1/0`, Code.InvalidArgument);
      await failure(tx.commit(), Code.Aborted);
      await failure(tx.sql`select 1`, Code.FailedPrecondition);
      await tx.rollback(); // after the end: not an error
      assert.deepEqual((await scope.sql<{ balance: bigint }>`select balance from accounts where id = ${id}`).rows, [{ balance: 5n }]);
    },
  },
  {
    name: "a commit that never ran (its deadline passed in the queue): rollback() still rolls back on the router",
    async fn({ client, run }) {
      const id = `${run}-itx-deadline`;
      const other = `${run}-itx-deadline-b`;
      const scope = client.onShard(id);
      for (const row of [id, other]) {
        await scope.sql`insert into accounts (id, balance) values (${row}, ${7n}) on conflict (id) do update set balance = excluded.balance`;
      }
      const blocker = await scope.begin();
      await blocker.sql`update accounts set balance = balance where id = ${other}`;
      const tx = await scope.begin();
      await tx.sql`update accounts set balance = 0 where id = ${id}`;
      // Waits on the blocker's row lock: the commit below queues behind it on the router.
      const waiting = tx.query(`update accounts set balance = 1 where id = $1 /* ${id} */`, [other]);
      for (;;) {
        const { rows } = await scope.query<{ n: number }>(
          "select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and query like $1", [`%/* ${id} */%`]);
        if (rows[0].n === 1) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      await failure(tx.commit({ timeoutMs: 300 }), Code.DeadlineExceeded);
      const rolledBack = tx.rollback();
      await blocker.rollback();
      await waiting;
      await rolledBack;
      // The transaction's row lock is gone and nothing of it was committed.
      const locked = await scope.query<{ balance: bigint }>("select balance from accounts where id = $1 for update nowait", [id]);
      assert.deepEqual(locked.rows, [{ balance: 7n }]);
    },
  },
];

/** Execute (the router reads the statement: shards, merge, two-phase writes), the sql tag, explain(), merge "auto". */
const executeCases: SdkCase[] = [
  {
    name: "execute(): a statement that pins its key runs on the key's shard, decoded as query() decodes; routing says why",
    async fn({ client }) {
      const r = await client.execute<{ id: string; balance: bigint }>("select id, balance from accounts where id = $1", ["acct-1"]);
      assert.deepEqual(r.rows, [{ id: "acct-1", balance: 1000n }]);
      assert.deepEqual(r.fields, [{ name: "id", dataTypeID: 25, typeName: "text" }, { name: "balance", dataTypeID: 20, typeName: "int8" }]);
      assert.deepEqual([r.command, r.rowsAffected], ["SELECT", 1]);
      assert.deepEqual(r.shards, [(await client.route("acct-1")).shard]);
      assert.match(r.routing, /accounts\.id = "acct-1"/);
      assert.deepEqual([r.twoPhase, r.transactionId, r.replayed, r.shardMapVersion], [false, "", false, 1n]);
      const arrays = await client.execute<[string, bigint]>("select id, balance from accounts where id = $1", ["acct-1"], { rowMode: "array" });
      assert.deepEqual(arrays.rows, [["acct-1", 1000n]]);
      // No replicas in this cluster: the preference reaches the router, which has none to offer.
      await failure(client.execute("select 1 as one from accounts where id = $1", ["acct-1"], { readPreference: "replica" }), Code.Unavailable);
    },
  },
  {
    name: "execute(): without a key, every shard, merged as the statement says (count, sum, avg in its place; ORDER BY … LIMIT … OFFSET)",
    async fn({ client }) {
      const agg = await client.execute("select count(*) as n, avg(balance) as mean, sum(balance) as total from accounts where id like 'acct-%'");
      assert.deepEqual(agg.columns.map((c) => c.name), ["n", "mean", "total"], "avg restored where the statement put it, its helper columns gone");
      assert.deepEqual([agg.rows[0].n, agg.rows[0].mean, agg.rows[0].total], [1000n, "1000.0000000000000000", "1000000"], "avg with the digits Postgres' own avg() shows");
      assert.equal(agg.shards.length, 4);
      assert.match(agg.routing, /every shard/);
      const top = await client.execute<{ id: string }>("select id from accounts where id like 'acct-%' order by id desc limit $1 offset $2", [3, 2]);
      assert.deepEqual(top.rows.map((r) => r.id), ["acct-997", "acct-996", "acct-995"]);
    },
  },
  {
    name: "execute(): a write on several shards commits on all of them together (two-phase); its requestId makes a retry a replay",
    async fn({ client, run }) {
      const [a, b] = await twoAccounts(client, `${run}-exec`, 10n);
      const shardsOf = async (...ids: string[]) => [...new Set(await Promise.all(ids.map(async (id) => (await client.route(id)).shard)))].sort();
      const requestId = `${run}-exec-${Date.now()}`;
      const sql = "update accounts set balance = balance + 5 where id in ($1, $2)";
      const first = await client.execute(sql, [a, b], { requestId });
      assert.deepEqual([first.command, first.rowsAffected, first.twoPhase, first.replayed], ["UPDATE", 2, true, false]);
      assert.ok(first.transactionId !== "");
      assert.deepEqual([...first.shards].sort(), await shardsOf(a, b));
      const again = await client.execute(sql, [a, b], { requestId });
      assert.deepEqual([again.replayed, again.transactionId, again.rowsAffected], [true, first.transactionId, 2]);
      assert.deepEqual(await balancesOf(client, a, b), [15n, 15n], "the replay wrote nothing");

      const gone = await client.execute<{ id: string }>("delete from accounts where id in ($1, $2) returning id", [a, b]);
      assert.deepEqual(gone.rows.map((r) => r.id).sort(), [a, b].sort());
      const back = await client.execute<{ id: string; balance: bigint }>("insert into accounts (id, balance) values ($1, 20), ($2, 30) returning id, balance", [a, b]);
      assert.deepEqual([back.command, back.rowsAffected, back.twoPhase], ["INSERT", 2, true]);
      assert.deepEqual(back.rows.sort((x, y) => (x.id < y.id ? -1 : 1)), [{ id: a, balance: 20n }, { id: b, balance: 30n }].sort((x, y) => (x.id < y.id ? -1 : 1)));
      assert.deepEqual(await balancesOf(client, a, b), [20n, 30n], "each row on its key's shard");
    },
  },
  {
    name: "execute(): an UPDATE that pins no key is refused (nothing changes) unless allowScatterWrite; then every shard, atomically",
    async fn({ client, run }) {
      const [a, b] = await twoAccounts(client, `${run}-scatterw`, 3n);
      const sql = "update accounts set balance = balance + 1 where id like $1";
      const err = await failure(client.execute(sql, [`${run}-scatterw-%`]), Code.InvalidArgument);
      assert.match(err.rawMessage, /allow_scatter_write|allowScatterWrite/);
      assert.deepEqual(await balancesOf(client, a, b), [3n, 3n]);
      const r = await client.execute(sql, [`${run}-scatterw-%`], { allowScatterWrite: true });
      assert.deepEqual([r.command, r.rowsAffected, r.twoPhase, r.shards.length], ["UPDATE", 2, true, 4]);
      assert.deepEqual(await balancesOf(client, a, b), [4n, 4n]);
    },
  },
  {
    name: "router.sql`…`: execute() with the values as bound parameters (an injection attempt is just a value); works detached",
    async fn({ client }) {
      const id = "acct-3";
      const r = await client.sql<{ balance: bigint }>`select balance from accounts where id = ${id}`;
      assert.deepEqual(r.rows, [{ balance: 1000n }]);
      assert.deepEqual(r.shards, [(await client.route(id)).shard]);
      const hostile = `${id}' or '1'='1`;
      const none = await client.sql`select id from accounts where id = ${hostile}`;
      assert.deepEqual([none.rows, none.shards], [[], [(await client.route(hostile)).shard]], "the quote is part of the key's value");
      const { sql } = client;
      assert.deepEqual((await sql`select count(*) as n from accounts where id like ${"acct-%"}`).rows, [{ n: 1000n }]);
      const err = await failure((client.sql as unknown as (s: string) => Promise<unknown>)("select 1"), Code.InvalidArgument);
      assert.match(err.rawMessage, /tagged template.*execute\(sql, params\)/);
    },
  },
  {
    name: "explain(): the shards, why, the tables, the merge as all()'s options and each shard's statement; nothing runs",
    async fn({ client }) {
      const names = (await client.topology()).shards.map((s) => s.name);
      const e = await client.explain("select balance, count(*) as n, avg(balance) as mean from accounts group by balance order by balance desc limit 5");
      assert.deepEqual(e.shards, names);
      assert.match(e.routing, /every shard/);
      assert.equal(e.statementKind, "SelectStmt");
      assert.deepEqual(e.tables, [{ name: "accounts", alias: "accounts", role: "sharded", keyColumn: "id", keyValues: [] }]);
      assert.deepEqual(e.merge, {
        orderBy: [{ column: "balance", descending: true }], limit: 5n, offset: 0n, groupBy: ["balance"],
        aggregates: { n: "count", mean: { avg: { sum: "mean__sum", count: "mean__count" } } },
      });
      assert.match(e.mergeDescription, /avg/);
      assert.deepEqual(e.statements.map((s) => s.shard), names);
      assert.ok(e.statements.every((s) => s.sql.includes('"mean__sum"')), "avg goes to the shards as sum and count");
      const pinned = await client.explain("delete from accounts where id = $1", ["acct-5"]);
      assert.deepEqual([pinned.shards, pinned.merge], [[(await client.route("acct-5")).shard], undefined]);
      assert.match(pinned.mergeDescription, /one shard/);
      assert.deepEqual(pinned.statements.map((s) => s.paramNumbers), [[1]]);
      assert.deepEqual(pinned.tables[0].keyValues, ["acct-5"]);
      assert.deepEqual(await balancesOf(client, "acct-5"), [1000n], "explain deleted nothing");
      await failure(client.explain("select count(distinct balance) from accounts"), Code.InvalidArgument);
    },
  },
  {
    name: "all() with merge \"auto\": the merge derived from the statement, as execute() does it",
    async fn({ client }) {
      const sql = "select count(*) as n, avg(balance) as mean from accounts where id like 'acct-%'";
      const auto = await client.all(sql, [], { merge: "auto" });
      assert.deepEqual(auto.rows, (await client.execute(sql)).rows);
      assert.deepEqual([auto.rows[0].n, Number(auto.rows[0].mean)], [1000n, 1000]);
      assert.equal(auto.shards.length, 4);
      const top = await client.all<{ id: string }>("select id from accounts where id like 'acct-%' order by id desc limit 2", [], { merge: "auto" });
      assert.deepEqual(top.rows.map((r) => r.id), ["acct-999", "acct-998"]);
    },
  },
];

const idCases: SdkCase[] = [
  {
    name: "nextId()/nextIds(): positive bigints, increasing, never repeated; usable as a sharded table's primary key and shard key",
    async fn({ client, run }) {
      const one = await client.nextId();
      const many = await client.nextIds(1000);
      assert.equal(typeof one, "bigint");
      assert.equal(many.length, 1000);
      let last = one;
      for (const id of many) {
        assert.ok(id > last, `${id} is not above ${last}`);
        last = id;
      }
      assert.ok(one > 0n && last < 2n ** 63n);
      const table = `sdk_ids_${run.replace(/-/g, "_")}`;
      await client.all(`create table if not exists ${table} (id bigint primary key, note text)`);
      const id = await client.nextId();
      await client.onShard(id).query(`insert into ${table} (id, note) values ($1, $2)`, [id, "by id"]);
      const { rows } = await client.onShard(id).query(`select id, note from ${table} where id = $1`, [id]);
      assert.deepEqual(rows, [{ id, note: "by id" }]);
      for (const bad of [0, 10_001, 1.5]) await failure(client.nextIds(bad), Code.InvalidArgument);
    },
  },
];

export const cases: SdkCase[] = [...basicCases, ...queryShapeCases, ...transactionCases, ...interactiveCases, ...executeCases, ...idCases];

/** NULL elements of arrays, as parameters and as cells. */
const arrayNullCases: SdkCase[] = [
  {
    name: "arrays with NULL elements come back with null elements, distinct from the text 'NULL'",
    async fn({ client }) {
      const { rows } = await client.onShard("arrays").query(
        "select $1::int8[] as ints, $2::text[] as texts, array[1, null]::int4[] as literal, ($2::text[])[2] is null as second_is_null",
        [[1n, null], ["a", null, "NULL"]]);
      assert.deepEqual(rows, [{ ints: [1n, null], texts: ["a", null, "NULL"], literal: [1, null], second_is_null: true }]);
    },
  },
];

/**
 * Cases waiting for server work, by name; sdk.test.ts runs a group once it is enabled there and
 * reports the others as skipped. deno-runner.ts runs the groups named in SDK_PENDING_GROUPS.
 */
export const pendingCases: Record<string, SdkCase[]> = {
  "array-nulls": arrayNullCases,
};
