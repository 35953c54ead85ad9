// The router against one database holding every row: seeded random data written through Execute
// (multi-row INSERTs across shards, reference-table writes: two-phase commit), seeded random writes,
// then at least 1,000 seeded random SELECTs (random-queries.ts) run through Execute and on the single
// database. Each answer must equal the database's, or be a refusal (invalid_argument, no SQLSTATE: the
// router's own "cannot be answered across shards"); refusals stay under 10%.
//
// Equal means: the same column names and type OIDs, and the same cells as Postgres prints them (text
// for text, numeric digits and scale exactly, int8 in decimal, bool t/f, dates ISO). Which rows come
// in which order is only partly determined by SQL, so the check compares what is determined:
// - without ORDER BY, the rows as a multiset;
// - with ORDER BY, the sequence of sort-key values (unique for a given multiset), and within each run
//   of equal keys (ties) the rows as a multiset;
// - with LIMIT/OFFSET, the window [offset, offset+limit) of the full answer (the statement without
//   LIMIT/OFFSET, on the single database): same length, same key sequence as that window, and the
//   rows of each key drawn from the full answer's rows of that key. Over ties (or without ORDER BY)
//   which rows a LIMIT keeps is not determined, so any choice from the tie group is right, and a
//   total order (a key that breaks every tie) makes this exact equality.
// Sort keys compare by value: numeric text without insignificant zeros (avg's scale varies with its
// inputs, "2.50" = "2.5"); every other type used here prints equal values identically (C collation).
//
// SHARDROUTER_DIFF_SEED replays a run; SHARDROUTER_DIFF_QUERIES raises the number of statements;
// SHARDROUTER_DIFF_PENDING=all (or a comma-separated list of random-queries.ts' pendingBugs) adds
// the statement shapes of reported router bugs not fixed yet; SHARDROUTER_DIFF_PROBLEMS=file writes
// every mismatch there (the failure message shows the first few).
import { writeFileSync } from "node:fs";
import { create } from "@bufbuild/protobuf";
import { NullValue } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import postgres from "postgres";
import { PostgresErrorDetailSchema } from "../../gen/shardrouter/v1/errors_pb.js";
import { type ResultSet, type Value, ValueSchema } from "../../gen/shardrouter/v1/value_pb.js";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";
import { currencies, itemColumns, type Param, type PendingBug, pendingBugs, type Query, randomItems, randomQuery, rng, schema } from "./random-queries.js";

const seed = process.env.SHARDROUTER_DIFF_SEED ? Number(process.env.SHARDROUTER_DIFF_SEED) : Math.floor(Math.random() * 2 ** 31);
const queryCount = Math.max(1000, Number(process.env.SHARDROUTER_DIFF_QUERIES ?? 0));
const pending = new Set<PendingBug>(process.env.SHARDROUTER_DIFF_PENDING === "all" ? pendingBugs
  : (process.env.SHARDROUTER_DIFF_PENDING ?? "").split(",").filter((x): x is PendingBug => (pendingBugs as readonly string[]).includes(x)));
const itemCount = 400;
/** Statements in flight at once, on each side. */
const concurrency = 8;

let t: TestRouter;
let oracle: postgres.Sql;

console.log(`differential: seed ${seed} (replay: SHARDROUTER_DIFF_SEED=${seed})`);

test.before(hook(async () => {
  t = await startTestRouter({ shards: 3, tables: { sharded: { accounts: "id", items: "id" }, reference: ["currencies"] } });
  for (const ddl of schema) await t.grpc.executeOnAll({ sql: ddl });
  const c = t.cluster.catalog;
  await t.direct(c).unsafe("create database oracle");
  // The router's sessions run with TimeZone=UTC and DateStyle=ISO: the oracle prints as they do. Dates
  // go as their text (postgres.js would make a JS Date of "infinity" or a BC date, and fail).
  const asText = { to: 1082, from: [1082], serialize: (x: unknown) => x, parse: (x: string) => x };
  oracle = postgres({ host: c.host, port: c.port, user: c.user, password: c.password, database: "oracle", max: 4, onnotice: () => {}, connection: { TimeZone: "UTC", DateStyle: "ISO, MDY" }, types: { asText } });
  for (const ddl of schema) await oracle.unsafe(ddl);
}));
test.after(hook(async () => {
  await oracle?.end({ timeout: 1 });
  await t?.stop();
}));

// ---- one comparable form for both sides --------------------------------------------------------

interface Answer { columns: string[]; rows: (string | null)[][] }

/** A router cell as Postgres prints it in text format. */
function cellText(v: Value): string | null {
  const k = v.kind;
  switch (k.case) {
    case undefined: case "nullValue": return null;
    case "boolValue": return k.value ? "t" : "f";
    case "int64Value": return k.value.toString();
    case "numericValue": case "stringValue": case "dateValue": case "uuidValue": case "jsonValue": return k.value;
    default: throw new Error(`a ${k.case} cell: the differential schema has no such column`);
  }
}

function routerAnswer(r: ResultSet | undefined): Answer {
  return {
    columns: (r?.columns ?? []).map((c) => `${c.name}:${c.typeOid}`),
    rows: (r?.rows ?? []).map((row) => row.values.map(cellText)),
  };
}

async function oracleAnswer(sql: string, params: Param[]): Promise<Answer> {
  const result = await oracle.unsafe(sql, params.map(toOracle) as never[]).raw();
  return {
    columns: result.columns.map((c) => `${c.name}:${c.type}`),
    rows: (result as unknown as (Buffer | null)[][]).map((row) => row.map((cell) => (cell === null ? null : cell.toString("utf8")))),
  };
}

function toValue(p: Param): Value {
  switch (p.type) {
    case "int8": return create(ValueSchema, { kind: { case: "int64Value", value: p.value } });
    case "text": return create(ValueSchema, { kind: { case: "stringValue", value: p.value } });
    case "numeric": return create(ValueSchema, { kind: { case: "numericValue", value: p.value } });
    case "date": return create(ValueSchema, { kind: { case: "dateValue", value: p.value } });
    case "bool": return create(ValueSchema, { kind: { case: "boolValue", value: p.value } });
    case "int8[]": return create(ValueSchema, { kind: { case: "arrayValue", value: { values: p.value.map((value) => toValue({ type: "int8", value })) } } });
    case "null": return create(ValueSchema, { kind: { case: "nullValue", value: NullValue.NULL_VALUE } });
  }
}

/** The same parameter with the type OID the router sends (postgres.js: bigint is int8, a string untyped). */
function toOracle(p: Param): unknown {
  switch (p.type) {
    case "int8": case "text": case "bool": return p.value;
    case "int8[]": return oracle.typed(`{${p.value.join(",")}}`, 1016); // as the router sends it: int8[] text
    case "numeric": return oracle.typed(p.value, 1700);
    case "date": return oracle.typed(p.value, 1082);
    case "null": return null;
  }
}

function showParams(params: Param[]): string {
  return params.map((p, i) => `$${i + 1}=${p.type === "null" ? "NULL" : p.type === "int8[]" ? `{${p.value.join(",")}}` : `${JSON.stringify(String(p.value))}::${p.type}`}`).join(" ");
}

// ---- the check ---------------------------------------------------------------------------------

/** Numeric text without insignificant zeros, so equal numbers tie as Postgres ties them. */
function canonical(cell: string | null, numeric: boolean): string | null {
  if (cell === null || !numeric || !cell.includes(".")) return cell;
  return cell.replace(/\.?0+$/, "").replace(/^-0$/, "0");
}

/** Why `got` is not a right answer to `q` given the full answer (undefined: it is). */
function mismatch(q: Query, full: Answer, got: Answer): string | undefined {
  if (got.columns.join(", ") !== full.columns.join(", ")) return `columns differ: router [${got.columns.join(", ")}], database [${full.columns.join(", ")}]`;
  const numeric = full.columns.map((c) => c.endsWith(":1700"));
  const order = q.orderColumns ?? [];
  const keyOf = (row: (string | null)[]) => JSON.stringify(order.map((i) => canonical(row[i]!, numeric[i]!)));
  const start = Number(q.offset);
  const window = full.rows.slice(start, q.limit === undefined ? undefined : start + Number(q.limit));
  if (got.rows.length !== window.length) return `${got.rows.length} rows, not ${window.length}`;
  const pool = new Map<string, Map<string, number>>();
  for (const row of full.rows) {
    const rows = pool.get(keyOf(row)) ?? new Map<string, number>();
    const text = JSON.stringify(row);
    rows.set(text, (rows.get(text) ?? 0) + 1);
    pool.set(keyOf(row), rows);
  }
  for (let i = 0; i < got.rows.length; i++) {
    const key = keyOf(got.rows[i]!);
    if (key !== keyOf(window[i]!)) return `row ${i} sorts as ${key}, the database's as ${keyOf(window[i]!)}`;
    const text = JSON.stringify(got.rows[i]);
    const left = pool.get(key)!.get(text) ?? 0;
    if (left === 0) return `row ${i} ${text} is not in the database's answer${order.length ? ` among the rows sorting as ${key}` : ""} (or comes too often)`;
    pool.get(key)!.set(text, left - 1);
  }
  return undefined;
}

/** Runs `fn` over `items` with at most `concurrency` in flight; results in input order. */
async function inParallel<T, R>(items: readonly T[], fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  }));
  return out;
}

const isRefusal = (err: unknown): err is ConnectError =>
  err instanceof ConnectError && err.code === Code.InvalidArgument && err.findDetails(PostgresErrorDetailSchema).length === 0;

const show = (a: Answer) => `${a.columns.join(", ")}\n      ${a.rows.slice(0, 8).map((r) => JSON.stringify(r)).join("\n      ")}${a.rows.length > 8 ? `\n      … ${a.rows.length} rows` : ""}`;

// ---- the tests ---------------------------------------------------------------------------------

const r = rng(seed);
const rows = randomItems(r, itemCount);
const insertSql = (count: number, returning: boolean) =>
  `insert into items (${itemColumns.join(", ")}) values ${Array.from({ length: count }, (_, i) => `(${itemColumns.map((_, c) => `$${i * itemColumns.length + c + 1}`).join(", ")})`).join(", ")}${returning ? " returning id" : ""}`;

test("seeded rows written through Execute land on their shards, the same rows in the single database", async () => {
  const cur = await t.grpc.execute({ sql: "insert into currencies (code, name, rate) values ($1, $2, $3), ($4, $5, $6), ($7, $8, $9), ($10, $11, $12), ($13, $14, $15), ($16, $17, $18)", params: currencies.flat().map(toValue) });
  assert.ok(cur.twoPhase, "a reference-table write commits on every shard with two-phase commit");
  await oracle.unsafe("insert into currencies (code, name, rate) values ($1, $2, $3), ($4, $5, $6), ($7, $8, $9), ($10, $11, $12), ($13, $14, $15), ($16, $17, $18)", currencies.flat().map(toOracle) as never[]);
  let twoPhase = 0;
  for (let at = 0; at < rows.length;) {
    const batch = rows.slice(at, at + 1 + r.int(40));
    at += batch.length;
    const returning = r.chance(0.5);
    const res = await t.grpc.execute({ sql: insertSql(batch.length, returning), params: batch.flat().map(toValue) });
    assert.is(res.result?.rowsAffected, BigInt(batch.length));
    if (returning) assert.equal(routerAnswer(res.result).rows.map((x) => x[0]).sort(), batch.map((x) => String((x[0] as { value: bigint }).value)).sort());
    if (res.twoPhase) twoPhase++;
    await oracle.unsafe(insertSql(batch.length, false), batch.flat().map(toOracle) as never[]);
  }
  assert.ok(twoPhase > 0, "some INSERTs spanned several shards");
  for (const s of t.cluster.shards) {
    const db = t.direct(s.nodes[0]);
    const ids = (await db`select id::text as id from items`).map((x) => String(x.id));
    const owners = await Promise.all(ids.map(async (id) => (await t.grpc.route({ key: id })).shard));
    assert.ok(owners.every((o) => o === s.name), `every row on ${s.name} is one its key places there`);
    assert.equal((await db`select count(*)::int as n from currencies`)[0]!.n, 6, `currencies on ${s.name}`);
  }
  const [{ n }] = await oracle`select count(*)::int as n from items`;
  assert.is(n, rows.length);
  assert.is(cur.result?.rowsAffected, 6n, "rows of a reference table count once, as in one database");
});

test("seeded writes through Execute (pinned, IN lists, upserts, scatter with allow_scatter_write, reference) change what they change in the single database", async () => {
  const ids = rows.map((x) => (x[0] as { value: bigint }).value);
  const pick = () => r.pick(ids);
  const int = (value: bigint): Param => ({ type: "int8", value });
  let fresh = 10_000_000n;
  for (let i = 0; i < 50; i++) {
    const roll = r.int(9);
    const returning = r.chance(0.5);
    let sql: string;
    let params: Param[];
    let scatter = false;
    switch (roll) {
      case 0: sql = "update items set n = coalesce(n, 0) + 1 where id = $1"; params = [int(pick())]; break;
      case 1: sql = `update items set grp = $1 where id in (${pick()}, ${pick()}, ${pick()})${returning ? " returning id, grp" : ""}`; params = [{ type: "text", value: r.pick(["a", "B", "é"]) }]; break;
      case 2: sql = "delete from items where id = $1"; params = [int(pick())]; break;
      case 3: sql = `update items set flag = not flag where n = $1${returning ? " returning id, flag" : ""}`; params = [int(BigInt(r.int(40) - 5))]; scatter = true; break;
      case 4: sql = "update currencies set rate = rate + 1 where code = $1"; params = [{ type: "text", value: r.pick(["EUR", "JPY", "CHF"]) }]; break;
      case 5: sql = `delete from items where id in ($1, $2) and n > 3${returning ? " returning *" : ""}`; params = [int(pick()), int(pick())]; break;
      case 6: // an upsert over an existing and a new key, most likely on two shards
        sql = `insert into items (id, grp, n) values ($1, $2, $3), ($4, $5, $6) on conflict (id) do update set n = excluded.n, grp = excluded.grp${returning ? " returning id, n" : ""}`;
        params = [int(pick()), { type: "text", value: "up" }, int(7n), int(fresh++), { type: "text", value: "new" }, int(8n)];
        break;
      default: sql = "update items set amount = amount + 1 where grp = $1"; params = [{ type: "text", value: "a" }]; break;
    }
    // Explain says where the write goes; Execute must run exactly there.
    const explained = await t.grpc.explain({ sql, params: params.map(toValue) });
    const call = t.grpc.execute({ sql, params: params.map(toValue), allowScatterWrite: scatter });
    if (roll >= 7) {
      const err = await call.then(() => undefined, (e: unknown) => e);
      assert.ok(isRefusal(err), `${sql}: an UPDATE with no shard key and allow_scatter_write=false is refused`);
      continue;
    }
    const res = await call;
    const want = await oracle.unsafe(sql, params.map(toOracle) as never[]).raw();
    const what = `${sql} ${showParams(params)}`;
    assert.equal(res.shards, explained.shards, `${what}: Execute ran where Explain said`);
    assert.is(res.result?.rowsAffected, BigInt(want.count), what);
    if (sql.includes(" returning ")) {
      // RETURNING rows of several shards come in shard order: compared as multisets.
      const got = routerAnswer(res.result);
      const expected = { columns: want.columns.map((c) => `${c.name}:${c.type}`), rows: (want as unknown as (Buffer | null)[][]).map((row) => row.map((c) => (c === null ? null : c.toString("utf8")))) };
      const sorted = (a: Answer) => ({ columns: a.columns, rows: a.rows.map((x) => JSON.stringify(x)).sort() });
      assert.equal(sorted(got), sorted(expected), what);
    }
  }
  const all = "select * from items order by id";
  assert.equal(routerAnswer((await t.grpc.execute({ sql: all })).result), await oracleAnswer(all, []), "every row, after the writes");
  const cur = "select * from currencies order by code";
  assert.equal(routerAnswer((await t.grpc.execute({ sql: cur })).result), await oracleAnswer(cur, []));
});

test(`${queryCount} seeded random SELECTs: the router answers as the single database, or refuses (under 10%)`, async () => {
  const ids = (await oracle`select id from items`).map((x) => BigInt(x.id as string));
  const queries = Array.from({ length: queryCount }, () => randomQuery(r, { ids, include: pending }));
  const started = Date.now();
  const fulls = await inParallel(queries, async (q) => {
    try {
      return await oracleAnswer(q.fullSql, q.fullParams);
    } catch (err) {
      throw new Error(`the generator made a statement the database rejects (a bug of random-queries.ts), seed ${seed}:\n  ${q.fullSql}\n  ${showParams(q.fullParams)}\n  ${(err as Error).message}`);
    }
  });
  // Where Explain says each statement runs (or its refusal), to hold Execute to it.
  const explained = await inParallel(queries, async (q) => t.grpc.explain({ sql: q.sql, params: q.params.map(toValue) }).then((e) => e.shards, (err: unknown) => err));
  const ranOn: (string[] | undefined)[] = [];
  const answers = await inParallel(queries, async (q, i) => {
    try {
      const res = await t.grpc.execute({ sql: q.sql, params: q.params.map(toValue) });
      ranOn[i] = res.shards;
      return routerAnswer(res.result);
    } catch (err) {
      return err;
    }
  });
  const problems: string[] = [];
  queries.forEach((q, i) => {
    const said = explained[i];
    const where = `seed ${seed}, statement ${i}: ${q.sql} ${showParams(q.params)}`;
    if (said instanceof Error !== answers[i] instanceof Error && (said instanceof Error || isRefusal(answers[i]))) {
      problems.push(`${where}\n  Explain ${said instanceof Error ? `refused (${(said as Error).message})` : "answered"}, Execute ${answers[i] instanceof Error ? `refused (${(answers[i] as Error).message})` : "answered"}`);
    } else if (!(said instanceof Error) && ranOn[i] && JSON.stringify(ranOn[i]) !== JSON.stringify(said)) {
      problems.push(`${where}\n  Explain said ${JSON.stringify(said)}, Execute ran on ${JSON.stringify(ranOn[i])}`);
    }
  });
  const refusals = new Map<string, number>();
  let refused = 0;
  queries.forEach((q, i) => {
    const got = answers[i];
    const where = `seed ${seed}, statement ${i} (${q.kind}):\n    ${q.sql}\n    ${showParams(q.params)}`;
    if (got instanceof Error) {
      if (!isRefusal(got)) {
        problems.push(`${where}\n  failed: ${got.message}`);
        return;
      }
      if (q.kind.endsWith(" pinned")) problems.push(`${where}\n  refused though one key pins one shard: ${got.rawMessage}`);
      refused++;
      const construct = got.rawMessage.split(" cannot be answered")[0]!;
      refusals.set(construct, (refusals.get(construct) ?? 0) + 1);
      return;
    }
    if (q.kind.startsWith("bait:") && q.kind.endsWith(" unpinned")) {
      problems.push(`${where}\n  answered, though it reaches every shard and cannot be merged`);
    }
    const why = mismatch(q, fulls[i]!, got as Answer);
    if (why) problems.push(`${where}\n  ${why}\n    router:   ${show(got as Answer)}\n    database: ${show(fulls[i]!)}${q.limit !== undefined || q.offset ? ` (full answer; offset ${q.offset}, limit ${q.limit ?? "all"})` : ""}`);
  });
  if (process.env.SHARDROUTER_DIFF_PROBLEMS) writeFileSync(process.env.SHARDROUTER_DIFF_PROBLEMS, problems.join("\n\n"));
  const share = (100 * refused) / queries.length;
  console.log(`differential: ${queries.length} queries, ${refused} refused (${share.toFixed(1)}%), seed ${seed}`);
  for (const [construct, n] of [...refusals].sort((a, b) => b[1] - a[1])) console.log(`  refused ${n}×: ${construct}`);
  const answered = new Map<string, number>();
  queries.forEach((q, i) => {
    if (answers[i] instanceof Error) return;
    const kind = q.kind.split(/[ :]/)[0]!;
    answered.set(kind, (answered.get(kind) ?? 0) + 1);
  });
  console.log(`  answered: ${[...answered].map(([k, n]) => `${k} ${n}`).join(", ")} (both sides in ${Date.now() - started} ms)`);
  if (problems.length) {
    assert.unreachable(`${problems.length} wrong answers or errors (replay with SHARDROUTER_DIFF_SEED=${seed}); the first ones:\n\n${problems.slice(0, 6).join("\n\n")}`);
  }
  assert.ok(share < 10, `${share.toFixed(1)}% refused, seed ${seed}: the router should answer at least 90% of these statements`);
});

test.run();
