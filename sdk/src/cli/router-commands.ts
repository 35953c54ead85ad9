// The RouterService commands, on the SDK's client: route, topology, execute, query, all, transfer, explain, ids.
import { Code } from "@connectrpc/connect";
import type { AllOptions, NodeInfo, ReadPreferenceName, ShardOutcome } from "../client.ts";
import type { OrderKey } from "../merge-spec.ts";
import type { Column, Row } from "../results.ts";
import { encodeParams } from "../values.ts";
import { type Command, type Context, UsageError, type Values, expectArgs, failure, intFlag, print } from "./command.ts";
import { RawJson, type TableColumn, cellText, keyValues, printable, table } from "./output.ts";

const paramsHelp = `  Parameters are sent as text ($1 is the first PARAM): Postgres infers their types from the
  statement, so cast where it cannot (where n = $1::int, $1::jsonb). There is no NULL parameter:
  write nullif($1, '') and pass ''. A PARAM that starts with - needs -- before the SQL:
    shardrouter query --key acct-1 -- 'select $1::int * 2 as n' -21`;

const readHelp = `  --read PREF     primary (default), primary-preferred, replica-preferred or replica`;

const numericTypes = new Set(["int2", "int4", "int8", "oid", "float4", "float8", "numeric"]);
const jsonTypes = new Set(["json", "jsonb"]);
const jsonArrayTypes = new Set(["_json", "_jsonb"]);

const nodeColumns: TableColumn[] = [{ header: "NODE" }, { header: "ADDRESS" }, { header: "ROLE" }, { header: "STATUS" }];
const nodeRow = (n: NodeInfo) => [n.name, n.address, n.role, n.status].map(cellText);

const route: Command = {
  name: "route",
  args: "KEY",
  summary: "where a key lives: its shard, keyspace id, strategy and the shard's nodes (no database is touched)",
  options: {},
  async run(ctx) {
    const [key] = expectArgs(ctx, 1, 1, "KEY");
    const r = await ctx.router().route(key);
    print(ctx, { key, ...r }, () =>
      keyValues([["key", key], ["shard", r.shard], ["keyspace id", String(r.keyspaceId)], ["strategy", r.strategy], ["shard map", `v${r.shardMapVersion}`]], ctx.style) +
      "\n" + table(nodeColumns, r.nodes.map(nodeRow), ctx.style));
    return 0;
  },
};

const topology: Command = {
  name: "topology",
  args: "",
  summary: "every shard: state, status, weight, the keys it owns, its nodes; transactions in doubt",
  options: {},
  async run(ctx) {
    expectArgs(ctx, 0, 0, "");
    const t = await ctx.router().topology();
    print(ctx, t, () => {
      const head = `strategy ${t.strategy} · shard map v${t.shardMapVersion} · ${t.inDoubtTransactions} in-doubt transaction${t.inDoubtTransactions === 1 ? "" : "s"}\n\n`;
      const shards = table(
        [{ header: "SHARD" }, { header: "STATE" }, { header: "STATUS" }, { header: "WEIGHT", align: "right" }, { header: "OWNS" }],
        t.shards.map((s) => [s.name, s.state, s.status, String(s.weight), s.ownership.description || `${(s.ownership.keyspaceFraction * 100).toFixed(1)}% of the keyspace`].map(cellText)),
        ctx.style,
      );
      const nodes = table([{ header: "SHARD" }, ...nodeColumns], t.shards.flatMap((s) => s.nodes.map((n) => [cellText(s.name), ...nodeRow(n)])), ctx.style);
      return `${head}${shards}\n${nodes}`;
    });
    return 0;
  },
};

/** --read as the SDK's name: "replica-preferred", "replicaPreferred" and "replica_preferred" alike. */
function readPreference(values: Values): ReadPreferenceName | undefined {
  const text = values.read as string | undefined;
  if (text === undefined) return undefined;
  const names: Record<string, ReadPreferenceName> = { primary: "primary", primarypreferred: "primaryPreferred", replicapreferred: "replicaPreferred", replica: "replica" };
  const name = names[text.toLowerCase().replace(/[-_]/g, "")];
  if (!name) throw new UsageError(`--read: "${text}" is not primary, primary-preferred, replica-preferred or replica`);
  return name;
}

/** json/jsonb cells (decoded as text) become RawJson, so --json writes the documents themselves. */
function presentRows(columns: Column[], rows: Row[]): Row[] {
  const json = columns.filter((c) => jsonTypes.has(c.type) || jsonArrayTypes.has(c.type));
  if (json.length === 0) return rows;
  const wrap = (v: unknown): unknown => (v === null || v === undefined ? v : Array.isArray(v) ? v.map(wrap) : new RawJson(String(v)));
  return rows.map((row) => {
    const copy = { ...row };
    for (const c of json) copy[c.name] = wrap(row[c.name]);
    return copy;
  });
}

/** Rows as a table: one column per distinct name (rows are keyed by name: a repeated name shows the last value). */
function rowsTable(ctx: Context, columns: Column[], rows: Row[]): string {
  const distinct: Column[] = [];
  for (const c of columns) if (!distinct.some((d) => d.name === c.name)) distinct.push(c);
  return table(
    distinct.map((c) => ({ header: c.name, align: numericTypes.has(c.type) ? "right" : "left" })),
    rows.map((row) => distinct.map((c) => cellText(row[c.name]))),
    ctx.style,
  );
}

function warnRepeatedColumns(ctx: Context, columns: Column[]): void {
  const seen = new Set<string>();
  for (const c of columns) {
    if (seen.has(c.name)) ctx.note(`shardrouter: note: more than one column is named ${JSON.stringify(printable(c.name))}: only the last one's values are shown; alias them apart`);
    seen.add(c.name);
  }
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

const query: Command = {
  name: "query",
  args: "--key KEY SQL [PARAM …]",
  summary: "one statement on the shard that owns KEY",
  help: `${readHelp}\n${paramsHelp}`,
  options: { key: { type: "string" }, read: { type: "string" } },
  async run(ctx) {
    const key = ctx.values.key as string | undefined;
    if (key === undefined || key === "") throw new UsageError("--key KEY is required: the statement runs on the shard that owns KEY");
    const [sql, ...params] = expectArgs(ctx, 1, Infinity, "SQL");
    const r = await ctx.router().onShard(key).query(sql, params, { readPreference: readPreference(ctx.values) });
    warnRepeatedColumns(ctx, r.columns);
    const rows = presentRows(r.columns, r.rows);
    print(ctx, { shard: r.shard, command: r.command, rowsAffected: r.rowsAffected, columns: r.columns.map(({ name, type }) => ({ name, type })), rows }, () =>
      r.columns.length > 0
        ? `${rowsTable(ctx, r.columns, rows)}(${plural(rows.length, "row")} · ${r.shard})\n`
        : `${r.command} ${r.rowsAffected} (${r.shard})\n`);
    return 0;
  },
};

const execute: Command = {
  name: "execute",
  args: "SQL [PARAM …]",
  summary: "one statement where the router reads it should go (its key's shard, or every shard, merged); prints the shards and why",
  help: `  --allow-scatter-write   let an UPDATE or DELETE that pins no shard key run on every shard (all
                          of them commit together); without it such a statement is refused
  --request-id ID         makes a write safe to run again: the same id returns the first outcome
                          (replayed) instead of writing twice
  --read PREF             reads: primary (default), primary-preferred, replica-preferred or replica
  \`shardrouter explain SQL\` says where a statement would go, without running it.
${paramsHelp.replace("query --key acct-1", "execute")}`,
  options: { "allow-scatter-write": { type: "boolean" }, "request-id": { type: "string" }, read: { type: "string" } },
  async run(ctx) {
    const [sql, ...params] = expectArgs(ctx, 1, Infinity, "SQL");
    const requestId = ctx.values["request-id"] as string | undefined;
    if (requestId === "") throw new UsageError("--request-id: give an id, or leave the flag out");
    const r = await ctx.router().execute(sql, params, {
      allowScatterWrite: !!ctx.values["allow-scatter-write"], requestId, readPreference: readPreference(ctx.values),
    });
    warnRepeatedColumns(ctx, r.columns);
    const rows = presentRows(r.columns, r.rows);
    const doc = {
      shards: r.shards, routing: r.routing, command: r.command, rowsAffected: r.rowsAffected, columns: r.columns.map(({ name, type }) => ({ name, type })), rows,
      twoPhase: r.twoPhase, transactionId: r.transactionId || undefined, requestId, replayed: r.replayed, shardMapVersion: r.shardMapVersion,
    };
    print(ctx, doc, () => {
      const body = r.columns.length > 0 ? `${rowsTable(ctx, r.columns, rows)}(${plural(rows.length, "row")})\n` : `${r.command} ${r.rowsAffected}\n`;
      const about: [string, string][] = [["shards", r.shards.join(", ")], ["routing", r.routing]];
      if (r.twoPhase) about.push(["two-phase", `yes: its shards committed together, transaction ${r.transactionId}`]);
      if (requestId !== undefined) about.push(["request id", requestId]);
      if (r.replayed) about.push(["replayed", "yes: the stored outcome of an earlier run with this request id; nothing ran now"]);
      return body + keyValues(about, ctx.style);
    });
    return 0;
  },
};

/** --order-by col[:asc|desc]; a colon inside the column name stays when no direction follows it. */
function orderKey(text: string): OrderKey {
  const m = /^(.+):(asc|desc)$/i.exec(text);
  const column = m ? m[1] : text;
  if (column === "") throw new UsageError(`--order-by: "${text}" names no column`);
  return { column, descending: m?.[2].toLowerCase() === "desc" };
}

const shardError = (s: ShardOutcome) => s.error && { code: Code[s.error.code], message: s.error.message, ...(s.error.sqlstate ? { sqlstate: s.error.sqlstate } : {}) };

const all: Command = {
  name: "all",
  args: "SQL [PARAM …]",
  summary: "one statement on every shard, the rows merged (concatenated in shard order unless --order-by)",
  help: `  --order-by COL[:desc]   merge the shards' rows in this order (repeat for more keys); each shard's
                          rows must already be in it: put the same ORDER BY in the SQL
  --limit N               rows after the merge; --offset N skips rows first. Put LIMIT limit+offset
                          in the SQL too, so no shard sends more than that
  --allow-partial         rows of the shards that answered when some fail; the failures go to stderr
                          (and to "shards" with --json), and the exit status is still 0
${readHelp}
${paramsHelp.replace("query --key acct-1", "all")}`,
  options: { "order-by": { type: "string", multiple: true }, limit: { type: "string" }, offset: { type: "string" }, "allow-partial": { type: "boolean" }, read: { type: "string" } },
  async run(ctx) {
    const [sql, ...params] = expectArgs(ctx, 1, Infinity, "SQL");
    const opts: AllOptions = {
      orderBy: ((ctx.values["order-by"] as string[] | undefined) ?? []).map(orderKey),
      limit: intFlag(ctx.values, "limit", 0),
      offset: intFlag(ctx.values, "offset", 0),
      allowPartial: !!ctx.values["allow-partial"],
      readPreference: readPreference(ctx.values),
    };
    const r = await ctx.router().all(sql, params, opts);
    warnRepeatedColumns(ctx, r.columns);
    for (const s of r.shards) {
      if (s.error) ctx.note(`shardrouter: ${s.shard} failed: ${failure(s.error.message, s.error.code, s.error.sqlstate)}`);
    }
    const rows = presentRows(r.columns, r.rows);
    const shards = r.shards.map((s) => ({ shard: s.shard, rowCount: s.rowCount, elapsedMs: s.elapsedMs, error: shardError(s) }));
    const answered = r.shards.filter((s) => !s.error).length;
    print(ctx, { command: r.command, rowsAffected: r.rowsAffected, columns: r.columns.map(({ name, type }) => ({ name, type })), rows, shards }, () =>
      r.columns.length > 0
        ? `${rowsTable(ctx, r.columns, rows)}(${plural(rows.length, "row")} from ${plural(answered, "shard")})\n`
        : `${r.command} ${r.rowsAffected} (${plural(answered, "shard")})\n`);
    return 0;
  },
};

const transfer: Command = {
  name: "transfer",
  args: "FROM TO AMOUNT",
  summary: "moves AMOUNT from account FROM to account TO, atomically (two-phase commit across shards)",
  help: `  --request-id ID   idempotency key: running it again with the same id returns the first outcome
                    (replayed) and moves nothing twice. Default: a new random UUID, printed`,
  options: { "request-id": { type: "string" } },
  async run(ctx) {
    const [from, to, amountText] = expectArgs(ctx, 3, 3, "FROM TO AMOUNT");
    if (!/^\d+$/.test(amountText)) throw new UsageError(`AMOUNT: "${amountText}" must be a whole number`);
    const amount = BigInt(amountText);
    const r = await ctx.router().transfer(from, to, amount, { requestId: ctx.values["request-id"] as string | undefined });
    print(ctx, { from, to, amount, ...r }, () => keyValues([
      ["outcome", r.outcome],
      ["from", `${from} on ${r.fromShard}, balance now ${r.fromBalance}`],
      ["to", `${to} on ${r.toShard}, balance now ${r.toBalance}`],
      ["two-phase", r.twoPhase ? "yes (the accounts are on different shards)" : "no (one shard)"],
      ["transaction", r.transactionId],
      ["request id", r.requestId],
      ["replayed", r.replayed ? "yes: the stored outcome of an earlier run with this request id; nothing moved now" : "no"],
    ], ctx.style));
    return 0;
  },
};

const explain: Command = {
  name: "explain",
  args: "SQL [PARAM …]",
  summary: "how the router reads a statement: the shards it goes to and why, the merge, each shard's SQL (nothing runs)",
  options: {},
  help: paramsHelp.replace("query --key acct-1", "explain"),
  async run(ctx) {
    const [sql, ...params] = expectArgs(ctx, 1, Infinity, "SQL");
    const r = await ctx.router().rpc.explain({ sql, params: encodeParams(params) });
    const doc = {
      shards: r.shards, routing: r.routing, statementKind: r.statementKind, merge: r.mergeDescription, shardMapVersion: r.shardMapVersion,
      tables: r.tables.map((x) => ({ name: x.name, alias: x.alias, role: x.role, keyColumn: x.keyColumn, keyValues: x.keyValues })),
      statements: r.statements.map((s) => ({ shard: s.shard, sql: s.sql, paramNumbers: s.paramNumbers })),
    };
    print(ctx, doc, () =>
      keyValues([["shards", r.shards.join(", ")], ["why", r.routing], ["merge", r.mergeDescription || "none"], ["shard map", `v${r.shardMapVersion}`]], ctx.style) +
      "\n" + table([{ header: "SHARD" }, { header: "STATEMENT" }], r.statements.map((s) => [s.shard, s.sql].map(cellText)), ctx.style));
    return 0;
  },
};

const ids: Command = {
  name: "ids",
  args: "[COUNT]",
  summary: "global ids (NextIds): COUNT (default 1, at most 10000) 64-bit ids, unique across routers, one per line",
  options: {},
  async run(ctx) {
    const [text] = expectArgs(ctx, 0, 1, "[COUNT]");
    const count = text === undefined ? 1 : Number(text);
    if (!Number.isInteger(count) || count < 1 || count > 10_000) throw new UsageError(`COUNT: "${text}" must be a whole number from 1 to 10000`);
    const got = await ctx.router().nextIds(count);
    print(ctx, got.map(String), () => got.map((id) => `${id}\n`).join(""));
    return 0;
  },
};

export const routerCommands: Command[] = [route, topology, execute, query, all, transfer, explain, ids];

