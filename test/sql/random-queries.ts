// Seeded random data and SELECT statements for the differential test (differential.test.ts): rows of
// a sharded table `items` (many NULLs and ties) and a reference table `currencies`, and statements
// over them with filters (with and without the shard key), ORDER BY in every spelling, LIMIT/OFFSET
// (constants and $n), GROUP BY with count/sum/min/max/avg, DISTINCT, windows, joins with the
// reference table, and a share of constructs the router must refuse across shards. Not a test file
// (the runner picks only *.test.ts).
//
// Each statement also comes without its LIMIT/OFFSET (`fullSql`), with the output columns its ORDER
// BY sorts on: over ties, which rows a LIMIT keeps is not determined, so the test checks the router's
// rows against the window of the full answer rather than against one database's pick.

export interface Rand {
  /** An integer in [0, n). */
  int(n: number): number;
  pick<T>(xs: readonly T[]): T;
  chance(p: number): boolean;
}

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export function rng(seed: number): Rand {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    int: (n) => Math.floor(next() * n),
    pick: (xs) => xs[Math.floor(next() * xs.length)]!,
    chance: (p) => next() < p,
  };
}

/** One of several alternatives, built only when picked (building one may add a parameter). */
function oneOf(r: Rand, choices: readonly (() => string)[]): string {
  return r.pick(choices)();
}

/** A statement parameter, typed the way both clients send it (text goes untyped, as the SDK sends it). */
export type Param =
  | { type: "int8"; value: bigint }
  | { type: "text"; value: string }
  | { type: "numeric"; value: string }
  | { type: "date"; value: string }
  | { type: "bool"; value: boolean }
  | { type: "int8[]"; value: bigint[] }
  | { type: "null" };

export const schema = [
  "create table items (id int8 primary key, grp text, n int4, amount numeric, cur text, created date, flag bool)",
  "create table currencies (code text primary key, name text not null, rate numeric)",
];

export const itemColumns = ["id", "grp", "n", "amount", "cur", "created", "flag"] as const;
const currencyColumns = ["code", "name", "rate"] as const;

const NULL: Param = { type: "null" };

export const currencies: Param[][] = [
  ["EUR", "Euro", "1.08"], ["USD", "US dollar", "1.00"], ["GBP", "Pound", "1.27"], ["JPY", "Yen", "0.0067"], ["CHF", "Franc", null], ["XXX", "None", "0"],
].map(([code, name, rate]) => [text(code!), text(name!), rate === null ? NULL : { type: "numeric", value: rate }]);

function text(value: string): Param {
  return { type: "text", value };
}

// Text in code point order with traps: case, a space, the empty string, non-ASCII, a surrogate pair
// and U+FFFD (which sort differently in UTF-16 code units than in code points).
const groups = ["a", "A", "b", "B", "ab", "a b", "", "é", "Z", "z", "😀", "\uFFFD", "Ω"];
const curs = ["EUR", "USD", "GBP", "JPY", "CHF", "ZZZ"];
const asciiGroups = ["a", "A", "b", "B", "ab", "Z", "z"];

/** Rows of items, in the column order of `itemColumns`: ids distinct, mostly dense, a few huge. */
export function randomItems(r: Rand, count: number): Param[][] {
  const ids = new Set<bigint>();
  while (ids.size < count) ids.add(r.chance(0.9) ? BigInt(1 + r.int(2 * count)) : BigInt(r.int(2 ** 30)) * BigInt(2 ** 32) + BigInt(r.int(2 ** 32)));
  return [...ids].map((id) => [
    { type: "int8", value: id },
    r.chance(0.15) ? NULL : text(r.pick(groups)),
    r.chance(0.2) ? NULL : { type: "int8", value: BigInt(r.chance(0.02) ? 100000 : r.int(46) - 5) },
    r.chance(0.2) ? NULL : { type: "numeric", value: r.chance(0.01) ? r.pick(["NaN", "Infinity", "-Infinity"]) : cents(r.int(4001) - 2000) },
    r.chance(0.15) ? NULL : text(r.pick(curs)),
    r.chance(0.2) ? NULL : { type: "date", value: r.chance(0.02) ? r.pick(["infinity", "-infinity", "0044-03-15 BC"]) : day(r.int(60)) },
    r.chance(0.25) ? NULL : { type: "bool", value: r.chance(0.5) },
  ]);
}

/** Amounts always carry two decimals, so equal amounts print equally (ties by text are ties by value). */
function cents(c: number): string {
  const abs = Math.abs(c);
  return `${c < 0 ? "-" : ""}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, "0")}`;
}

function day(offset: number): string {
  return new Date(Date.UTC(2024, 0, 1 + offset)).toISOString().slice(0, 10);
}

export interface Query {
  sql: string;
  params: Param[];
  /** The statement without LIMIT/OFFSET and its parameters (those of LIMIT/OFFSET are always last). */
  fullSql: string;
  fullParams: Param[];
  /**
   * The output columns (0-based) ORDER BY sorts on, in order; [] without ORDER BY. Undefined when it
   * sorts on something not in the output: then only the rows as a multiset are determined.
   */
  orderColumns?: number[];
  limit?: bigint;
  offset: bigint;
  /** What the statement exercises, e.g. "group join pinned", "bait:count-distinct". */
  kind: string;
}

export interface GeneratorOptions {
  /** Ids that exist (the key filters pick mostly these). */
  ids: readonly bigint[];
  /**
   * Constructs that hit router bugs reported but not fixed yet (see differential.test.ts); generated
   * only when listed here, so the test can show each bug on demand and covers it once it is fixed.
   */
  include?: ReadonlySet<PendingBug>;
}

/**
 * Router bugs reported and not fixed yet: their statements (or, for the write count, its check) are
 * left out unless listed, so the test stays green meanwhile and covers each once it is listed.
 */
export type PendingBug = never;
export const pendingBugs: readonly PendingBug[] = [];

/** A select-list item: its text, the name Postgres gives its column, and whether it aggregates. */
interface Item { sql: string; pgName: string; alias?: string; agg?: boolean; over?: boolean; star?: string[] }

/** Output names that are keywords: ORDER BY must quote them. */
const keywords = new Set(["case", "coalesce", "greatest", "least", "nullif"]);

// Expressions over items, with the column name Postgres gives each (FigureColname: a cast takes its
// argument's name, CASE is "case", a function call its name, an operator "?column?").
const itemExpressions: [string, string][] = [
  ["n + 1", "?column?"], ["coalesce(n, 0)", "coalesce"], ["upper(grp)", "upper"], ["amount * 2", "?column?"],
  ["id % 7", "?column?"], ["n is null", "?column?"], ["n::text", "n"], ["case when flag then 'y' else 'n' end", "case"],
  ["length(grp)", "length"], ["created + 1", "?column?"], ["greatest(n, 3)", "greatest"], ["-n", "?column?"],
  ["cast(amount as text)", "amount"], ["grp || '!'", "?column?"], ["nullif(n, 0)", "nullif"],
  // Subqueries over the reference table (every shard has all of it): a scalar one takes its column's name.
  ["(select name from currencies where code = cur)", "name"], ["exists (select 1 from currencies where code = cur and rate > 1)", "exists"],
];
const joinExpressions: [string, string][] = [["rate * 2", "?column?"], ["amount * rate", "?column?"], ["coalesce(name, code)", "coalesce"]];

// Group keys: an expression and the column name Postgres gives it.
const itemGroupKeys: [string, string][] = [
  ["grp", "grp"], ["flag", "flag"], ["cur", "cur"], ["n", "n"], ["created", "created"], ["n % 3", "?column?"], ["upper(grp)", "upper"], ["id", "id"],
];
const joinGroupKeys: [string, string][] = [["name", "name"], ["code", "code"], ["rate", "rate"]];

// Aggregates that merge across shards, and what each reads.
const itemAggregates = [
  "count(*)", "count(n)", "count(amount)", "sum(n)", "sum(amount)", "sum(id)", "min(n)", "max(n)", "min(grp)", "max(grp)", "min(amount)",
  "max(amount)", "min(created)", "max(created)", "avg(n)", "avg(amount)", "avg(id)", "sum(n * 2)", "avg(coalesce(amount, 0))",
  "count(*) filter (where flag)", "sum(n) filter (where n > 3)", "avg(n) filter (where flag)", "avg(amount) filter (where n > 0)",
];
const joinAggregates = ["avg(rate)", "sum(rate)", "max(rate)", "count(code)", "min(name)"];

const aliases = ["a", "b", "c", "x", "total", "lo", "hi", "mean", '"Mixed Case"', '"avg"', "k1", "k2", "v"];

class Builder {
  readonly params: Param[] = [];

  constructor(readonly r: Rand, readonly opts: GeneratorOptions) {}

  param(p: Param): string {
    this.params.push(p);
    return `$${this.params.length}`;
  }

  /** An id that exists (mostly) or does not. */
  id(): bigint {
    return this.r.chance(0.9) && this.opts.ids.length ? this.r.pick(this.opts.ids) : BigInt(100000 + this.r.int(1000));
  }

  /** A key value as a constant, an int8 parameter or a text parameter. */
  key(): string {
    const id = this.id();
    const how = this.r.int(5);
    if (how === 0) return String(id);
    if (how === 4) return this.param({ type: "numeric", value: String(id) });
    // Written as int8 input reads it ('0123', 123.0): placed by the value, as 123 is.
    if (how === 1) return oneOf(this.r, [() => `'${id}'`, () => `'0${id}'`, () => `${id}.0`, () => `' ${id} '`, () => this.param(text(`0${id}`))]);
    if (how === 2) return this.param(text(String(id)));
    return this.param({ type: "int8", value: id });
  }
}

interface From {
  sql: string;
  /** A column of items (of currencies), sometimes qualified by the table's alias. */
  itemCol: (c: string) => string;
  curCol?: (c: string) => string;
  /** items' alias, when the FROM gives it one. */
  alias?: string;
  join: boolean;
  ref: boolean;
}

function fromClause(b: Builder): From {
  const r = b.r;
  const roll = r.int(100);
  if (roll < 6) return { sql: "currencies", itemCol: (c) => c, curCol: (c) => c, join: false, ref: true };
  if (roll < 28) {
    const aliased = r.chance(0.6);
    const kind = r.pick(["join", "join", "left join", "inner join"]);
    const on = aliased ? "i.cur = c.code" : r.pick(["cur = code", "items.cur = currencies.code"]);
    return {
      sql: aliased ? `items i ${kind} currencies c on ${on}` : `items ${kind} currencies on ${on}`,
      itemCol: (c) => (aliased && r.chance(0.6) ? `i.${c}` : c),
      curCol: (c) => (aliased && r.chance(0.6) ? `c.${c}` : c),
      ...(aliased ? { alias: "i" } : {}),
      join: true,
      ref: false,
    };
  }
  const aliased = r.chance(0.3);
  return { sql: aliased ? "items i" : "items", itemCol: (c) => (aliased && r.chance(0.5) ? `i.${c}` : c), ...(aliased ? { alias: "i" } : {}), join: false, ref: false };
}

/** Conditions over items (and currencies in a join); the key ones decide which shards a statement needs. */
function whereClause(b: Builder, from: From): { sql: string; pinned: string } {
  const r = b.r;
  const terms: string[] = [];
  let pinned = "unpinned";
  const col = from.itemCol;
  if (!from.ref) {
    const roll = r.int(100);
    if (roll < 25) {
      const key = b.key();
      terms.push(r.chance(0.85) ? `${col("id")} = ${key}` : `${key} = ${col("id")}`);
      pinned = "pinned";
    } else if (roll < 37) {
      const keys = Array.from({ length: 1 + r.int(5) }, () => b.key());
      if (r.chance(0.1)) keys.push("null");
      terms.push(`${col("id")} in (${keys.join(", ")})`);
      pinned = "in-list";
    } else if (roll < 41) {
      // = ANY: an int8[] parameter, or ARRAY[…] of keys.
      const ids = Array.from({ length: r.int(5) }, () => b.id());
      terms.push(r.chance(0.6) ? `${col("id")} = any(${b.param({ type: "int8[]", value: ids })})` : `${col("id")} = any(array[${[...ids.map(String), b.key()].join(", ")}]::int8[])`);
      pinned = "in-list";
    } else if (roll < 46) {
      terms.push(oneOf(r, [
        () => `${col("id")} between ${b.id()} and ${b.id() + 200n}`,
        () => `${col("id")} < ${b.param({ type: "int8", value: b.id() })}`,
        () => `(${col("id")} = ${b.id()} or ${col("id")} = ${b.id()})`,
      ]));
    }
  }
  const others: string[] = [];
  for (let i = r.int(from.ref ? 2 : 3); i > 0; i--) {
    const t = from.ref ? currencyTerm(b) : itemTerm(b, from);
    others.push(r.chance(0.1) ? `not (${t})` : t);
  }
  // An OR of two conditions; the key condition, when there is one, stays a conjunct and pins.
  if (others.length >= 2 && r.chance(0.3)) others.splice(0, 2, `(${others[0]} or ${others[1]})`);
  terms.push(...others);
  return { sql: terms.length ? ` where ${terms.join(" and ")}` : "", pinned };
}

function itemTerm(b: Builder, from: From): string {
  const r = b.r;
  const col = from.itemCol;
  switch (r.int(from.join ? 12 : 10)) {
    case 0: return `${col("n")} is null`;
    case 1: return `${col("n")} ${r.pick([">", "<", ">=", "<=", "=", "<>"])} ${r.chance(0.5) ? String(r.int(40) - 5) : b.param({ type: "int8", value: BigInt(r.int(40) - 5) })}`;
    case 2: return r.chance(0.5) ? `${col("grp")} = ${b.param(text(r.pick(groups)))}` : `${col("grp")} in ('${r.pick(asciiGroups)}', '${r.pick(asciiGroups)}')`;
    case 3: return `${col("amount")} ${r.pick([">", "<"])} ${r.chance(0.5) ? cents(r.int(4001) - 2000) : b.param({ type: "numeric", value: cents(r.int(4001) - 2000) })}`;
    case 4: return `${col("created")} ${r.pick(["<", ">="])} ${r.chance(0.5) ? `date '${day(r.int(60))}'` : b.param({ type: "date", value: day(r.int(60)) })}`;
    case 5: return oneOf(r, [() => col("flag"), () => `not ${col("flag")}`, () => `${col("flag")} is not true`, () => `${col("flag")} = ${b.param({ type: "bool", value: r.chance(0.5) })}`]);
    case 6: return `${col("cur")} is ${r.pick(["", "not "])}null`;
    case 7: return `${col("grp")} is not null`;
    case 8: return `${col("cur")} in (select code from currencies where rate > ${b.param({ type: "numeric", value: "1" })})`;
    case 9: return `coalesce(${col("n")}, 0) % 2 = 0`;
    case 10: return `${from.curCol!("rate")} ${r.pick([">", "<="])} 1`;
    default: return `${from.curCol!("name")} is not null`;
  }
}

function currencyTerm(b: Builder): string {
  return oneOf(b.r, [() => "rate > 1", () => "rate is null", () => `code <> ${b.param(text("USD"))}`, () => "name like '%o%'"]);
}

/** A plain select list (no aggregates): columns and expressions, some aliased, or a star. */
function plainItems(b: Builder, from: From, max: number): Item[] {
  const r = b.r;
  const pool: [string, string][] = from.ref
    ? currencyColumns.map((c) => [c, c])
    : [...itemColumns.map((c): [string, string] => [from.itemCol(c), c]), ...itemExpressions.map(([e, n]): [string, string] => [qualify(e, from, b.r), n])];
  if (from.join) pool.push(...currencyColumns.map((c): [string, string] => [from.curCol!(c), c]), ...joinExpressions);
  if (!from.ref && r.chance(0.08)) {
    const star = from.join ? [...itemColumns, ...currencyColumns] : [...itemColumns];
    const items: Item[] = [{ sql: "*", pgName: "*", star }];
    if (r.chance(0.3)) items.push({ sql: "n + 1", pgName: "?column?", alias: "n1" });
    return items;
  }
  const items: Item[] = [];
  const count = 1 + r.int(max);
  for (let i = 0; i < count; i++) {
    const [sql, pgName] = r.pick(pool);
    if (items.some((it) => it.sql === sql)) continue;
    items.push(withAlias(b, { sql, pgName }, items));
  }
  return items;
}

/** An expression over items' columns, sometimes qualified by the FROM's alias (columns need no qualifying here). */
function qualify(expr: string, from: From, r: Rand): string {
  return from.alias && r.chance(0.5) ? expr.replace(/\b(id|grp|n|amount|cur|created|flag)\b(?!')/g, `${from.alias}.$1`) : expr;
}

/** Sometimes an alias; mostly for an operator's "?column?", which two columns would share. */
function withAlias(b: Builder, item: Item, taken: Item[]): Item {
  if (!b.r.chance(item.pgName === "?column?" ? 0.7 : 0.45)) return item;
  const alias = b.r.pick(aliases);
  if (taken.some((t) => t.alias === alias || t.pgName === unquote(alias))) return item;
  return { ...item, alias };
}

/** The output column names Postgres gives, for picking names ORDER BY may use unambiguously. */
function outputNames(items: Item[]): string[] {
  return items.flatMap((it) => it.star ?? [it.alias ? unquote(it.alias) : it.pgName]);
}

function unquote(alias: string): string {
  return alias.startsWith('"') ? alias.slice(1, -1) : alias;
}

function renderItems(items: Item[]): string {
  return items.map((it) => (it.alias ? `${it.sql} as ${it.alias}` : it.sql)).join(", ");
}

/** ORDER BY over output columns: by name, by position, or by the same expression; with directions. */
function orderBy(b: Builder, items: Item[], opts: { max: number; noExpression?: boolean }): { sql: string; columns: number[] } {
  const r = b.r;
  const names = outputNames(items);
  const count = r.int(opts.max + 1);
  if (count === 0 || names.length === 0) return { sql: "", columns: [] };
  const keys: string[] = [];
  const columns: number[] = [];
  const hasStar = items.some((it) => it.star);
  for (let k = 0; k < count; k++) {
    const col = r.int(names.length);
    if (columns.includes(col)) continue;
    const name = names[col]!;
    const item = itemAt(items, col);
    const ways: string[] = [];
    const unique = names.filter((n) => n === name).length === 1 && name !== "?column?" && name !== "*";
    if (unique) ways.push(/^[a-z_][a-z0-9_]*$/.test(name) && !keywords.has(name) ? name : `"${name}"`);
    if (!hasStar || r.chance(0.1)) ways.push(String(col + 1)); // after a star: refused across shards
    // A bare column name in ORDER BY is read as an output name first: only when that is unambiguous.
    const bare = /^[a-z_]+$/.test(item.sql);
    if (!item.star && !(opts.noExpression && item.over) && (!bare || names.filter((n) => n === item.sql).length <= 1)) ways.push(item.sql);
    if (!ways.length) continue;
    const dir = r.pick(["", " asc", " desc"]);
    const nulls = r.pick(["", "", " nulls first", " nulls last"]);
    keys.push(`${r.pick(ways)}${dir}${nulls}`);
    columns.push(col);
  }
  return keys.length ? { sql: ` order by ${keys.join(", ")}`, columns } : { sql: "", columns: [] };
}

function itemAt(items: Item[], col: number): Item {
  let at = 0;
  for (const it of items) {
    const width = it.star?.length ?? 1;
    if (col < at + width) return it;
    at += width;
  }
  throw new Error(`no output column ${col}`);
}

/** LIMIT / OFFSET / FETCH in their spellings, constants or parameters; rendered last. */
function limitClause(b: Builder): { sql: string; limit?: bigint; offset: bigint } {
  const r = b.r;
  const roll = r.int(100);
  if (roll < 45) return { sql: "", offset: 0n };
  const limit = BigInt(r.chance(0.1) ? r.pick([50, 400]) : r.int(13));
  const offset = BigInt(r.chance(0.1) ? r.pick([40, 300]) : r.int(8));
  // A constant, an int8 parameter, or the number as a text parameter (untyped: Postgres makes it int8).
  const v = (x: bigint) => (r.chance(0.5) ? String(x) : b.param(r.chance(0.8) ? { type: "int8", value: x } : text(String(x))));
  if (roll < 65) return { sql: ` limit ${v(limit)}`, limit, offset: 0n };
  if (roll < 80) {
    const l = v(limit);
    return { sql: ` limit ${l} offset ${v(offset)}`, limit, offset };
  }
  if (roll < 85) return { sql: ` offset ${v(offset)}`, offset };
  if (roll < 90) return { sql: ` fetch first ${limit} rows only`, limit, offset: 0n };
  if (roll < 94) return { sql: ` offset ${offset} rows fetch next ${limit} rows only`, limit, offset };
  if (roll < 97) return { sql: " limit all", offset: 0n };
  return { sql: ` limit ${b.param({ type: "null" })}`, offset: 0n };
}

/** One random SELECT. */
export function randomQuery(r: Rand, opts: GeneratorOptions): Query {
  const b = new Builder(r, opts);
  const from = fromClause(b);
  const roll = r.int(100);
  let shape: Omit<Query, "params" | "fullParams" | "limit" | "offset" | "sql" | "fullSql"> & { body: string };
  if (from.ref) shape = plainSelect(b, from, "ref");
  else if (roll < 40) shape = plainSelect(b, from, "plain");
  else if (roll < 68) shape = groupedSelect(b, from);
  else if (roll < 76) shape = aggregateSelect(b, from);
  else if (roll < 86) shape = distinctSelect(b, from);
  else if (roll < 94) shape = windowSelect(b, from);
  else shape = baitSelect(b, from);
  const fullParams = b.params.slice();
  const lim = limitClause(b);
  return {
    sql: shape.body + lim.sql, params: b.params, fullSql: shape.body, fullParams, orderColumns: shape.orderColumns,
    ...(lim.limit !== undefined ? { limit: lim.limit } : {}), offset: lim.offset, kind: shape.kind,
  };
}

type Shape = { body: string; orderColumns?: number[]; kind: string };

function plainSelect(b: Builder, from: From, kind: string): Shape {
  const items = plainItems(b, from, 4);
  const where = whereClause(b, from);
  const order = orderBy(b, items, { max: 3 });
  return { body: `select ${renderItems(items)} from ${from.sql}${where.sql}${order.sql}`, orderColumns: order.columns, kind: `${kind} ${from.join ? "join " : ""}${where.pinned}` };
}

function groupedSelect(b: Builder, from: From): Shape {
  const r = b.r;
  const keyPool = [...itemGroupKeys.map(([e, n]): [string, string] => [qualify(e, from, b.r), n]), ...(from.join ? joinGroupKeys : [])];
  const keys: Item[] = [];
  for (let i = 1 + r.int(2); i > 0; i--) {
    const [sql, pgName] = r.pick(keyPool);
    if (!keys.some((k) => k.sql === sql)) keys.push(withAlias(b, { sql, pgName }, keys));
  }
  const aggs = aggregates(b, from, keys);
  // Mostly keys first; sometimes aggregates first (GROUP BY positions then point past them).
  const items = r.chance(0.75) ? [...keys, ...aggs] : [...aggs, ...keys];
  const names = outputNames(items);
  const groupBy = keys.map((k) => {
    const pos = items.indexOf(k) + 1;
    const ways = [k.sql, String(pos)];
    // An alias in GROUP BY names the output column only when no input column has that name.
    if (k.alias && !isColumnName(unquote(k.alias)) && names.filter((n) => n === unquote(k.alias!)).length === 1) ways.push(k.alias);
    return r.pick(ways);
  });
  let kind = "group";
  if (r.chance(0.04)) {
    // `select n % 3 as n … group by n`: Postgres groups by the input column n, not the output (the
    // router, without the schema, refuses an alias that a column may shadow).
    items.push({ sql: qualify("n % 3", from, r), pgName: "?column?", alias: "n" });
    groupBy.unshift("n");
    kind = "group shadowed";
  }
  const where = whereClause(b, from);
  const order = orderBy(b, items, { max: 3 });
  return { body: `select ${renderItems(items)} from ${from.sql}${where.sql} group by ${groupBy.join(", ")}${order.sql}`, orderColumns: order.columns, kind: `${kind} ${from.join ? "join " : ""}${where.pinned}` };
}

function isColumnName(name: string): boolean {
  return (itemColumns as readonly string[]).includes(name) || (currencyColumns as readonly string[]).includes(name);
}

/** 1–3 aggregates, aliased unless their default name stays unique. */
function aggregates(b: Builder, from: From, taken: Item[]): Item[] {
  const pool = [...itemAggregates.map((a) => qualify(a, from, b.r)), ...(from.join ? joinAggregates : [])];
  const out: Item[] = [];
  for (let i = 1 + b.r.int(3); i > 0; i--) {
    const sql = b.r.pick(pool);
    if (out.some((a) => a.sql === sql)) continue;
    const pgName = sql.slice(0, sql.indexOf("("));
    const item: Item = { sql, pgName, agg: true };
    const clash = [...taken, ...out].some((t) => (t.alias ? unquote(t.alias) : t.pgName) === pgName);
    const aliased = clash || b.r.chance(0.6) ? withAliasAlways(b, item, [...taken, ...out]) : item;
    out.push(aliased);
  }
  return out;
}

function withAliasAlways(b: Builder, item: Item, taken: Item[]): Item {
  const free = aliases.filter((a) => !taken.some((t) => t.alias === a || t.pgName === unquote(a)));
  return { ...item, alias: b.r.pick(free) };
}

function aggregateSelect(b: Builder, from: From): Shape {
  const items = aggregates(b, from, []);
  const where = whereClause(b, from);
  return { body: `select ${renderItems(items)} from ${from.sql}${where.sql}`, orderColumns: [], kind: `aggregate ${from.join ? "join " : ""}${where.pinned}` };
}

function distinctSelect(b: Builder, from: From): Shape {
  const items = plainItems(b, from, 3).filter((it) => !it.star);
  if (!items.length) items.push({ sql: from.itemCol("grp"), pgName: "grp" });
  const where = whereClause(b, from);
  const order = orderBy(b, items, { max: 2 });
  return { body: `select distinct ${renderItems(items)} from ${from.sql}${where.sql}${order.sql}`, orderColumns: order.columns, kind: `distinct ${from.join ? "join " : ""}${where.pinned}` };
}

/** Windows partitioned by the shard key: each partition lives whole on one shard, so these merge. */
function windowSelect(b: Builder, from: From): Shape {
  const id = from.itemCol("id");
  const items: Item[] = [{ sql: id, pgName: "id" }, ...plainItems(b, from, 2).filter((it) => !it.star && it.pgName !== "id")];
  const w = b.r.pick([`count(*) over (partition by ${id})`, `sum(${from.itemCol("n")}) over (partition by ${id})`, `rank() over (partition by ${id} order by ${from.itemCol("n")})`]);
  items.push({ sql: w, pgName: w.slice(0, w.indexOf("(")), alias: "w", over: true });
  const where = whereClause(b, from);
  const order = orderBy(b, items, { max: 2, noExpression: true });
  return { body: `select ${renderItems(items)} from ${from.sql}${where.sql}${order.sql}`, orderColumns: order.columns, kind: `window ${where.pinned}` };
}

/**
 * Constructs that cannot be merged across shards: the router must refuse them (invalid_argument) when
 * the statement reaches several shards, and answer them when the key pins one.
 */
function baitSelect(b: Builder, from: From): Shape {
  const r = b.r;
  const col = from.itemCol;
  const which = r.int(7);
  const where = whereClause(b, from);
  const tail = (kind: string, body: string, orderColumns: number[] | undefined = []): Shape => ({ body: `${body}`, orderColumns, kind: `bait:${kind} ${where.pinned}` });
  switch (which) {
    case 0: return tail("count-distinct", `select ${col("grp")}, count(distinct ${col("n")}) as c from ${from.sql}${where.sql} group by ${col("grp")}`);
    case 1: return tail("window", `select ${col("id")}, row_number() over (order by ${col("id")}) as rn from ${from.sql}${where.sql} order by rn`, [1]);
    case 2: return tail("window", `select ${col("id")}, sum(${col("n")}) over (partition by ${col("grp")}) as s from ${from.sql}${where.sql}`);
    case 3: return tail("having", `select ${col("grp")}, count(*) as c from ${from.sql}${where.sql} group by ${col("grp")} having count(*) > ${b.param({ type: "int8", value: BigInt(r.int(5)) })}`);
    case 4: return tail("string-agg", `select ${col("flag")}, string_agg(${col("grp")}, ',' order by ${col("grp")}) as g from ${from.sql}${where.sql} group by ${col("flag")}`);
    case 5: return tail("order-not-selected", `select ${col("grp")} from ${from.sql}${where.sql} order by ${col("n")}, ${col("id")}`, undefined);
    default: return tail("distinct-on", `select distinct on (${col("grp")}) ${col("grp")}, ${col("id")} from ${from.sql}${where.sql} order by ${col("grp")}, ${col("id")}`, [0, 1]);
  }
}
