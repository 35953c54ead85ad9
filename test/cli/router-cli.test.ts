// The RouterService commands of `shardrouter` (sdk/src/cli/router-commands.ts) run as a child process
// against a router on four real shards: route and topology print what Route and GetTopology answer
// (--json field by field, the tables by their lines); query and all return the database's rows (the
// merge flags change what comes back); transfer moves money once per request id; failures exit 1 with
// one line naming the code and SQLSTATE; mistakes in the command line exit 2 with the usage.
import * as assert from "uvu/assert";
import type postgres from "postgres";
import { seedDemoAccounts } from "../../server/dev-cluster/demo-accounts.js";
import { startTestRouter, type TestRouter } from "../harness/router-cluster.js";
import { hook, test } from "../harness/uvu.js";
import { type CliRun, lines, runCli } from "./run-cli.js";

let t: TestRouter;

test.before(hook(async () => {
  t = await startTestRouter({ shards: 4 });
  await seedDemoAccounts(t.router.planner);
}));
test.after(hook(async () => { await t?.stop(); }));

/** The CLI with the router's URL in SHARDROUTER_URL (as a user would export it). */
const cli = (...args: string[]): Promise<CliRun> => runCli(args, { SHARDROUTER_URL: t.router.url });

/** Runs with --json (a global flag, so before the command: it may end in `-- PARAM …`); exit 0, nothing on stderr. */
async function json(...args: string[]): Promise<any> {
  const run = await cli("--json", ...args);
  assert.is(run.code, 0, run.stderr);
  assert.is(run.stderr, "");
  return JSON.parse(run.stdout);
}

async function ok(...args: string[]): Promise<string> {
  const run = await cli(...args);
  assert.is(run.code, 0, run.stderr);
  assert.is(run.stderr, "");
  assert.not.match(run.stdout, "\x1b", "stdout is a pipe: no ANSI codes");
  return run.stdout;
}

/** A direct connection (as the superuser) to the primary of the shard that owns `key`. */
async function shardOf(key: string): Promise<{ shard: string; sql: postgres.Sql }> {
  const { shard } = await t.connect.route({ key });
  return { shard, sql: t.direct(t.cluster.shards.find((s) => s.name === shard)!.nodes[0]) };
}

async function balance(key: string): Promise<bigint> {
  const { sql } = await shardOf(key);
  const [row] = await sql<{ balance: string }[]>`select balance from accounts where id = ${key}`;
  return BigInt(row.balance);
}

/** The first demo account on each of `shards`, in that order. */
async function keysOn(...shards: string[]): Promise<string[]> {
  const found = new Map<string, string>();
  for (let i = 0; found.size < shards.length; i++) {
    const key = `acct-${i}`;
    const { shard } = await t.connect.route({ key });
    if (shards.includes(shard) && !found.has(shard)) found.set(shard, key);
  }
  return shards.map((s) => found.get(s)!);
}

test("route KEY: --json is what Route answers, field by field; the table names the shard, keyspace id and nodes", async () => {
  for (const key of ["acct-1", "zürich-42"]) {
    const rpc = await t.connect.route({ key });
    assert.equal(await json("route", key), {
      key, shard: rpc.shard, keyspaceId: rpc.keyspaceId, strategy: rpc.strategy,
      nodes: rpc.nodes.map(({ name, address, role, status }) => ({ name, address, role, status })),
      shardMapVersion: String(rpc.shardMapVersion),
    });
  }
  const rpc = await t.connect.route({ key: "acct-1" });
  const out = await ok("route", "acct-1");
  assert.match(out, new RegExp(`^shard +${rpc.shard}$`, "m"));
  assert.match(out, new RegExp(`^keyspace id +${rpc.keyspaceId}$`, "m"));
  assert.match(out, /^strategy +hash_ring$/m);
  assert.match(out, /^NODE +ADDRESS +ROLE +STATUS$/m);
  for (const n of rpc.nodes) assert.match(out, new RegExp(`^${n.name} +${n.address} +${n.role} +${n.status}$`, "m"));
});

test("topology: --json is what GetTopology answers; the tables list every shard with its state, weight, ownership and nodes", async () => {
  const rpc = await t.connect.getTopology({});
  const doc = await json("topology");
  assert.equal(doc, {
    strategy: rpc.strategy,
    shardMapVersion: String(rpc.shardMapVersion),
    inDoubtTransactions: rpc.inDoubtTransactions,
    shards: rpc.shards.map((s) => ({
      name: s.name, status: s.status, state: s.state, weight: s.weight,
      nodes: s.nodes.map(({ name, address, role, status }) => ({ name, address, role, status })),
      ownership: { description: s.ownership!.description, keyspaceFraction: s.ownership!.keyspaceFraction },
    })),
  });
  assert.is(doc.shards.length, 4);
  const out = await ok("topology");
  assert.match(out, /^strategy hash_ring · shard map v1 · 0 in-doubt transactions$/m);
  for (const s of rpc.shards) {
    assert.match(out, new RegExp(`^${s.name} +active +up +1 +${s.ownership!.description}$`, "m"));
    for (const n of s.nodes) assert.match(out, new RegExp(`^${s.name} +${n.name} +${n.address} +primary +up$`, "m"));
  }
});

test("query --key: rows of the key's shard (int8 as text in JSON, parameters as text the SQL casts); writes report their count", async () => {
  const { shard } = await shardOf("acct-7");
  const doc = await json("query", "--key", "acct-7", "select id, balance from accounts where id = $1", "acct-7");
  assert.equal(doc, {
    shard, command: "SELECT", rowsAffected: 1,
    columns: [{ name: "id", type: "text" }, { name: "balance", type: "int8" }],
    rows: [{ id: "acct-7", balance: "1000" }],
  });
  const table = lines(await ok("query", "--key", "acct-7", "select id, balance from accounts where id = $1", "acct-7"));
  assert.equal(table, ["id      balance", "------  -------", "acct-7     1000", `(1 row · ${shard})`]);

  // After --, a parameter may start with '-'; Postgres types it from the cast.
  const cast = await json("query", "--key", "acct-7", "--", "select $1::int * 2 as n, $2 || '!' as s, $3::jsonb as j", "-21", "a b", '{"big": 12345678901234567890}');
  assert.equal(cast.rows, [{ n: -42, s: "a b!", j: { big: 12345678901234567890 } }]);
  const raw = (await cli("query", "--key", "acct-7", "--json", "select $1::jsonb as j", '{"big": 12345678901234567890}')).stdout;
  assert.match(raw, '"j": {"big": 12345678901234567890}', "a json cell is written as the document, no digit lost");

  const update = await ok("query", "--key", "acct-9", "update accounts set balance = $2::bigint where id = $1", "acct-9", "1234");
  assert.is(update, `UPDATE 1 (${(await t.connect.route({ key: "acct-9" })).shard})\n`);
  assert.is(await balance("acct-9"), 1234n);
});

test("query --read: the preference reaches the router (no replicas here: replica is Unavailable, primary works)", async () => {
  const replica = await cli("query", "--key", "acct-7", "--read", "replica", "select 1 as one");
  assert.is(replica.code, 1);
  assert.match(replica.stderr, /^shardrouter: shard shard-\d has no replica .*\(Unavailable\)\n$/);
  assert.equal((await json("query", "--key", "acct-7", "--read", "primary", "select 1 as one")).rows, [{ one: 1 }]);
  const bad = await cli("query", "--key", "acct-7", "--read", "nearest", "select 1");
  assert.is(bad.code, 2);
  assert.match(bad.stderr, /--read: "nearest" is not primary/);
});

test("execute: a read that pins its key runs on the key's shard, one without a key on every shard merged as the SQL says; shards and routing printed", async () => {
  const { shard, sql } = await shardOf("acct-7");
  const [{ balance: b7 }] = await sql<{ balance: string }[]>`select balance from accounts where id = 'acct-7'`;
  const pinned = await json("execute", "select id, balance from accounts where id = $1", "acct-7");
  assert.equal(pinned, {
    shards: [shard], routing: pinned.routing, command: "SELECT", rowsAffected: 1,
    columns: [{ name: "id", type: "text" }, { name: "balance", type: "int8" }], rows: [{ id: "acct-7", balance: b7 }],
    twoPhase: false, replayed: false, shardMapVersion: "1",
  });
  assert.match(pinned.routing, 'accounts.id = "acct-7"');
  const table = lines(await ok("execute", "select id, balance from accounts where id = $1", "acct-7"));
  assert.equal(table, ["id      balance", "------  -------", `acct-7  ${b7.padStart(7)}`, "(1 row)", `shards   ${shard}`, `routing  ${pinned.routing}`]);

  const ids: string[] = [];
  let total = 0n;
  for (const s of t.cluster.shards) {
    for (const row of await t.direct(s.nodes[0])<{ id: string; balance: string }[]>`select id, balance from accounts`) {
      ids.push(row.id);
      total += BigInt(row.balance);
    }
  }
  const merged = await json("execute", "select count(*) as n, sum(balance) as total from accounts");
  assert.equal(merged.rows, [{ n: String(ids.length), total: String(total) }], "one row: the shards' counts and sums added up");
  assert.equal(merged.shards, ["shard-0", "shard-1", "shard-2", "shard-3"]);
  assert.match(merged.routing, "every shard");
  const top = await json("execute", "select id from accounts order by id desc limit 2");
  assert.equal(top.rows.map((r: { id: string }) => r.id), ids.sort().reverse().slice(0, 2), "merge-sorted, 2 kept");
});

test("execute: a write on two shards commits on both (two-phase) and --request-id replays it; an UPDATE without a key needs --allow-scatter-write", async () => {
  const keys: string[] = [];
  const owners = new Set<string>();
  for (let i = 0; keys.length < 2; i++) {
    const key = `cli-exec-${i}`;
    const { shard } = await t.connect.route({ key });
    if (!owners.has(shard)) (keys.push(key), owners.add(shard));
  }
  const insert = "insert into accounts (id, balance) values ($1, 5), ($2, 5)";
  const first = await json("execute", insert, ...keys, "--request-id", "cli-exec-1");
  assert.equal([first.command, first.rowsAffected, first.twoPhase, first.replayed, first.requestId], ["INSERT", 2, true, false, "cli-exec-1"]);
  assert.equal(first.shards, [...owners].sort());
  assert.ok(first.transactionId, "a two-phase write names its transaction");
  for (const key of keys) assert.is(await balance(key), 5n, `${key} is on its owner's shard`);
  const replay = lines(await ok("execute", insert, ...keys, "--request-id", "cli-exec-1"));
  assert.is(replay[0], "INSERT 2");
  assert.ok(replay.includes(`two-phase   yes: its shards committed together, transaction ${first.transactionId}`), replay.join("\n"));
  assert.ok(replay.includes("request id  cli-exec-1"), replay.join("\n"));
  assert.match(replay.join("\n"), /^replayed +yes: the stored outcome/m);

  const update = "update accounts set balance = balance + 1 where id like 'cli-exec-%'";
  const refused = await cli("execute", update);
  assert.is(refused.code, 1);
  assert.match(refused.stderr, /^shardrouter: .*\(InvalidArgument\)\n$/);
  for (const key of keys) assert.is(await balance(key), 5n, "refused: nothing changed");
  const everywhere = await json("execute", "--allow-scatter-write", update);
  assert.equal([everywhere.command, everywhere.rowsAffected, everywhere.twoPhase, everywhere.shards.length], ["UPDATE", 2, true, 4]);
  for (const key of keys) assert.is(await balance(key), 6n);
  const removed = lines(await ok("execute", "delete from accounts where id in ($1, $2)", ...keys));
  assert.is(removed[0], "DELETE 2", "an IN list pins both keys: no flag needed");
  for (const key of keys) assert.is((await (await shardOf(key)).sql`select id from accounts where id = ${key}`).length, 0, `${key} deleted`);

  const replica = await cli("execute", "--read", "replica", "select 1 as one from accounts where id = $1", "acct-7");
  assert.is(replica.code, 1);
  assert.match(replica.stderr, /\(Unavailable\)\n$/);
});

test("all: --order-by and --limit merge the shards' rows; without them the rows are concatenated", async () => {
  // The top three balances live on three different shards, none of them the first.
  const [k3, k2, k1] = await keysOn("shard-3", "shard-2", "shard-1");
  for (const [key, value] of [[k3, 3000], [k2, 2500], [k1, 2000]] as const) {
    await (await shardOf(key)).sql`update accounts set balance = ${value} where id = ${key}`;
  }
  const sql = "select id, balance from accounts order by balance desc, id limit 3";
  const merged = await json("all", sql, "--order-by", "balance:desc", "--order-by", "id", "--limit", "3");
  assert.equal(merged.rows, [{ id: k3, balance: "3000" }, { id: k2, balance: "2500" }, { id: k1, balance: "2000" }]);
  assert.equal(merged.shards.map((s: { shard: string; rowCount: number; error?: unknown }) => [s.shard, s.rowCount, s.error]),
    [["shard-0", 3, undefined], ["shard-1", 3, undefined], ["shard-2", 3, undefined], ["shard-3", 3, undefined]]);
  const concatenated = await json("all", sql);
  assert.is(concatenated.rows.length, 12, "no --limit: every shard's three rows");
  assert.not.equal(concatenated.rows.slice(0, 3), merged.rows, "no --order-by: shard order, so the test above can fail");

  const table = lines(await ok("all", sql, "--order-by", "balance:desc", "--order-by", "id", "--limit", "2"));
  const w = Math.max(k3.length, k2.length);
  assert.equal(table, [`${"id".padEnd(w)}  balance`, `${"-".repeat(w)}  -------`, `${k3.padEnd(w)}     3000`, `${k2.padEnd(w)}     2500`, "(2 rows from 4 shards)"]);

  const count = await json("all", "select count(*) as n from accounts");
  assert.is(count.rows.reduce((n: bigint, r: { n: string }) => n + BigInt(r.n), 0n), 1000n);
});

test("all --allow-partial: the shards that answer, each failure a line on stderr (exit 0); without it the call fails", async () => {
  const sql = t.direct(t.cluster.shards[0].nodes[0]);
  await sql`create table only_on_shard0 (n int)`;
  await sql`insert into only_on_shard0 values (7)`;
  const partial = await cli("all", "--allow-partial", "--json", "select n from only_on_shard0");
  assert.is(partial.code, 0, partial.stderr);
  const doc = JSON.parse(partial.stdout);
  assert.equal(doc.rows, [{ n: 7 }]);
  assert.equal(doc.shards.map((s: { error?: { code: string; sqlstate?: string } }) => s.error && [s.error.code, s.error.sqlstate]),
    [undefined, ["InvalidArgument", "42P01"], ["InvalidArgument", "42P01"], ["InvalidArgument", "42P01"]]);
  assert.equal(lines(partial.stderr).map((l) => l.replace(/ failed: .*\((\w+)\)$/, " failed ($1)")),
    ["shardrouter: shard-1 failed (InvalidArgument)", "shardrouter: shard-2 failed (InvalidArgument)", "shardrouter: shard-3 failed (InvalidArgument)"]);
  const strict = await cli("all", "select n from only_on_shard0");
  assert.is(strict.code, 1);
  assert.match(strict.stderr, /42P01/);
});

test("transfer: the balances move once per request id (a retry is replayed); the human answer says so", async () => {
  const [from, to] = await keysOn("shard-0", "shard-3");
  const [fromBefore, toBefore] = [await balance(from), await balance(to)];
  const first = await json("transfer", from, to, "25", "--request-id", "cli-transfer-1");
  assert.equal(first, {
    from, to, amount: "25", outcome: "committed", fromShard: "shard-0", toShard: "shard-3", twoPhase: true,
    fromBalance: String(fromBefore - 25n), toBalance: String(toBefore + 25n), transactionId: first.transactionId, replayed: false, requestId: "cli-transfer-1",
  });
  assert.equal([await balance(from), await balance(to)], [fromBefore - 25n, toBefore + 25n]);
  const again = await json("transfer", from, to, "25", "--request-id", "cli-transfer-1");
  assert.is(again.replayed, true);
  assert.is(again.transactionId, first.transactionId);
  assert.equal([await balance(from), await balance(to)], [fromBefore - 25n, toBefore + 25n], "a replay moves nothing");

  const out = await ok("transfer", from, to, "10");
  assert.match(out, /^outcome +committed$/m);
  assert.match(out, new RegExp(`^from +${from} on shard-0, balance now ${fromBefore - 35n}$`, "m"));
  assert.match(out, /^two-phase +yes/m);
  assert.match(out, /^request id +[0-9a-f-]{36}$/m, "the random request id is printed, so a retry can reuse it");
  assert.equal([await balance(from), await balance(to)], [fromBefore - 35n, toBefore + 35n]);
});

test("failures exit 1 with one line on stderr: the message, the Connect code, the SQLSTATE", async () => {
  const bad = await cli("query", "--key", "acct-1", "select * from no_such_table");
  assert.is(bad.code, 1);
  assert.is(bad.stdout, "");
  assert.is(lines(bad.stderr).length, 1, bad.stderr);
  assert.match(bad.stderr, /^shardrouter: relation "no_such_table" does not exist.*\(InvalidArgument\)\n$/);
  assert.match(bad.stderr, "SQLSTATE 42P01");

  const overdraft = await cli("transfer", "acct-5", "acct-6", "1000000", "--json");
  assert.is(overdraft.code, 1);
  assert.is(overdraft.stdout, "", "--json prints no document for a failure");
  assert.match(overdraft.stderr, /\((FailedPrecondition)/);

  const unreachable = await runCli(["route", "acct-1", "--url", "http://127.0.0.1:1"]);
  assert.is(unreachable.code, 1);
  assert.match(unreachable.stderr, /^shardrouter: .*ECONNREFUSED.*\(Unavailable\)\n$/);
});

test("mistakes in the command line exit 2 with the command's usage on stderr; --help prints it on stdout", async () => {
  const cases: [string[], RegExp][] = [
    [["query", "select 1"], /^shardrouter: --key KEY is required.*\nusage: shardrouter query --key KEY SQL/],
    [["execute"], /^shardrouter: missing SQL\nusage: shardrouter execute SQL/],
    [["execute", "select 1", "--request-id="], /^shardrouter: --request-id: give an id.*\nusage: shardrouter execute SQL/],
    [["route"], /^shardrouter: missing KEY\nusage: shardrouter route KEY/],
    [["route", "a", "b"], /^shardrouter: unexpected argument "b"\nusage: shardrouter route KEY/],
    [["transfer", "a", "b", "-5"], /^shardrouter: Unknown option '-5'.*\nusage: shardrouter transfer FROM TO AMOUNT/],
    [["transfer", "a", "b", "1.5"], /^shardrouter: AMOUNT: "1.5" must be a whole number\nusage: shardrouter transfer/],
    [["all", "select 1", "--limit", "x"], /^shardrouter: --limit: "x" must be a whole number >= 0\nusage: shardrouter all SQL/],
    [["route", "k", "--url", "ftp://x"], /^shardrouter: --url: "ftp:\/\/x" is not an http:\/\/ or https:\/\/ URL/],
    [["frobnicate"], /^shardrouter: unknown command "frobnicate"\nusage: shardrouter \[global flags\] COMMAND/],
    [[], /^usage: shardrouter \[global flags\] COMMAND/],
  ];
  for (const [args, expected] of cases) {
    const run = await cli(...args);
    assert.is(run.code, 2, `${args.join(" ")}: ${run.stderr}`);
    assert.is(run.stdout, "");
    assert.match(run.stderr, expected);
  }
  const help = await cli("all", "--help");
  assert.is(help.code, 0);
  assert.match(help.stdout, /^usage: shardrouter all SQL \[PARAM …\]\n/);
  assert.match(help.stdout, /--order-by COL\[:desc\]/);
  assert.match(help.stdout, /cast where it cannot \(where n = \$1::int/);
  assert.match(help.stdout, /visible to\s+every user of this machine in `ps`/);
  assert.match((await cli("--help")).stdout, /^  reshard status \[JOB\] \[--wait\]$/m);
  assert.match((await cli("execute", "--help")).stdout, /^  --allow-scatter-write +let an UPDATE or DELETE that pins no shard key run on every shard/m);
});

test("explain: the shards Explain names for a pinned statement (the key's shard) and for a scan (every shard)", async () => {
  const pinned = await json("explain", "select balance from accounts where id = $1", "acct-1");
  assert.equal(pinned.shards, [(await t.connect.route({ key: "acct-1" })).shard]);
  assert.match(pinned.routing, /id/);
  assert.is(pinned.statements.length, 1);
  const scan = await json("explain", "select id from accounts order by id limit 3");
  assert.equal([...scan.shards].sort(), t.cluster.shards.map((s) => s.name).sort());
  assert.match(await ok("explain", "select id from accounts order by id limit 3"), /SHARD\s+STATEMENT/);
});

test("ids COUNT: distinct increasing 64-bit ids from NextIds; a bad count is a usage error (exit 2)", async () => {
  const got: string[] = await json("ids", "5");
  assert.is(got.length, 5);
  const ids = got.map(BigInt);
  for (let i = 1; i < ids.length; i++) assert.ok(ids[i] > ids[i - 1], `${ids[i]} > ${ids[i - 1]}`);
  assert.is((await ok("ids")).trim().split("\n").length, 1);
  const bad = await cli("ids", "0");
  assert.is(bad.code, 2);
  assert.match(bad.stderr, /COUNT/);
});

test.run();
