// @shardrouter/sdk/kysely on real shards: a Kysely instance per shard key runs its queries on that
// key's shard (checked on the shard itself), joins within the shard, and db.transaction() /
// startTransaction() are interactive transactions there (commit, rollback, savepoints, a failed
// statement). The scatter dialect merges a SELECT over every shard and refuses writes. The execute
// dialect needs no key: the router reads each statement (a key pinned → its shard; none → every
// shard, merged; a write on several shards → all together).
import { Kysely } from "kysely";
import * as assert from "uvu/assert";
import { Code, ShardRouterError } from "../../sdk/src/index.ts";
import { ShardRouterDialect, ShardRouterExecuteDialect, ShardRouterScatterDialect } from "../../sdk/src/kysely.ts";
import { hook, test } from "../harness/uvu.js";
import { type AdapterFixture, startAdapterFixture } from "./fixtures.js";

interface DB {
  accounts: { id: string; balance: bigint };
  orders: { id: string; account_id: string; amount: bigint };
}

let f: AdapterFixture;
const db = (key: string) => new Kysely<DB>({ dialect: new ShardRouterDialect({ client: f.client, key }) });

test.before(hook(async () => {
  f = await startAdapterFixture();
}));

test.after(hook(async () => {
  await f?.stop();
}));

test("insert, select and update run on the shard that owns the key", async () => {
  const id = "kysely-1";
  const inserted = await db(id).insertInto("accounts").values({ id, balance: 100n }).executeTakeFirstOrThrow();
  assert.is(inserted.numInsertedOrUpdatedRows, 1n);
  assert.equal(await f.onOwner(id, "select balance from accounts where id = $1", [id]), [{ balance: "100" }], "the row is on the owner shard");
  const updated = await db(id).updateTable("accounts").set((eb) => ({ balance: eb("balance", "+", 5n) })).where("id", "=", id).executeTakeFirstOrThrow();
  assert.is(updated.numUpdatedRows, 1n);
  const row = await db(id).selectFrom("accounts").select(["id", "balance"]).where("id", "=", id).executeTakeFirstOrThrow();
  assert.equal(row, { id, balance: 105n });
  const deleted = await db(id).deleteFrom("accounts").where("id", "=", id).executeTakeFirstOrThrow();
  assert.is(deleted.numDeletedRows, 1n);
});

test("a join within the shard: an account and its orders", async () => {
  const id = "acct-7";
  await db(id).insertInto("orders").values([
    { id: "kysely-o1", account_id: id, amount: 30n }, { id: "kysely-o2", account_id: id, amount: 12n },
  ]).execute();
  const rows = await db(id).selectFrom("accounts").innerJoin("orders", "orders.account_id", "accounts.id")
    .select(["accounts.id", "accounts.balance", "orders.amount"]).where("accounts.id", "=", id).orderBy("orders.amount", "desc").execute();
  assert.equal(rows, [{ id, balance: 1000n, amount: 30n }, { id, balance: 1000n, amount: 12n }]);
});

test("db.transaction(): commits what the callback wrote, on one reserved connection", async () => {
  const id = "acct-11";
  const seen = await db(id).transaction().execute(async (trx) => {
    await trx.updateTable("accounts").set({ balance: 900n }).where("id", "=", id).execute();
    await trx.insertInto("orders").values({ id: "kysely-t1", account_id: id, amount: 100n }).execute();
    // read-your-writes inside; invisible outside until commit
    const inside = await trx.selectFrom("accounts").select("balance").where("id", "=", id).executeTakeFirstOrThrow();
    const outside = await f.onOwner(id, "select balance from accounts where id = $1", [id]);
    return { inside: inside.balance, outside: outside[0].balance };
  });
  assert.equal(seen, { inside: 900n, outside: "1000" });
  assert.equal(await f.onOwner(id, "select a.balance, o.amount from accounts a join orders o on o.account_id = a.id where o.id = 'kysely-t1'"), [{ balance: "900", amount: "100" }]);
  await f.noOpenTransactions();
});

test("db.transaction(): a callback that throws rolls everything back and rethrows its error", async () => {
  const id = "acct-12";
  const err = await db(id).transaction().execute(async (trx) => {
    await trx.updateTable("accounts").set({ balance: 1n }).where("id", "=", id).execute();
    throw new Error("changed my mind");
  }).catch((e: Error) => e);
  assert.is((err as Error).message, "changed my mind");
  assert.equal(await f.onOwner(id, "select balance from accounts where id = $1", [id]), [{ balance: "1000" }]);
  await f.noOpenTransactions();
});

test("a failed statement inside a transaction: the error surfaces and nothing is written", async () => {
  const id = "acct-13";
  const err = await db(id).transaction().execute(async (trx) => {
    await trx.updateTable("accounts").set({ balance: 5n }).where("id", "=", id).execute();
    await trx.updateTable("accounts").set({ balance: -1n }).where("id", "=", id).execute(); // check (balance >= 0)
  }).catch((e: { code?: unknown; message: string }) => e);
  assert.match(String((err as Error).message), /check constraint/);
  assert.equal(await f.onOwner(id, "select balance from accounts where id = $1", [id]), [{ balance: "1000" }]);
  await f.noOpenTransactions();
});

test("startTransaction(): savepoints roll back part of a transaction; isolation and read only reach Postgres", async () => {
  const id = "acct-14";
  const trx = await db(id).startTransaction().setIsolationLevel("repeatable read").execute();
  const level = await trx.selectNoFrom((eb) => eb.fn<string>("current_setting", [eb.val("transaction_isolation")]).as("level")).executeTakeFirstOrThrow();
  assert.is(level.level, "repeatable read");
  await trx.updateTable("accounts").set({ balance: 700n }).where("id", "=", id).execute();
  const sp = await trx.savepoint("before_order").execute();
  await sp.insertInto("orders").values({ id: "kysely-sp", account_id: id, amount: 1n }).execute();
  const back = await sp.rollbackToSavepoint("before_order").execute();
  await back.commit().execute();
  assert.equal(await f.onOwner(id, "select balance from accounts where id = $1", [id]), [{ balance: "700" }]);
  assert.equal(await f.onOwner(id, "select id from orders where id = 'kysely-sp'"), [], "rolled back to the savepoint");

  const ro = await db(id).transaction().setAccessMode("read only").execute(async (t) => {
    await t.updateTable("accounts").set({ balance: 0n }).where("id", "=", id).execute();
  }).catch((e: Error) => e);
  assert.match(String((ro as Error).message), /read-only transaction/);
  await f.noOpenTransactions();
});

test("scatter: a SELECT over every shard, merged as the dialect says; writes and transactions refused", async () => {
  const merged = new Kysely<DB>({
    dialect: new ShardRouterScatterDialect({ client: f.client, orderBy: [{ column: "balance", descending: true }, "id"], limit: 5 }),
  });
  const top = await merged.selectFrom("accounts").select(["id", "balance"]).orderBy("balance", "desc").orderBy("id").limit(5).execute();
  const every = (await f.client.all<{ id: string; balance: bigint }>("select id, balance from accounts")).rows;
  const expected = every.sort((a, b) => (a.balance === b.balance ? (a.id < b.id ? -1 : 1) : a.balance > b.balance ? -1 : 1)).slice(0, 5);
  assert.equal(top, expected);
  const counted = new Kysely<DB>({ dialect: new ShardRouterScatterDialect({ client: f.client, aggregates: { n: "count" } }) });
  const [{ n }] = await counted.selectFrom("accounts").select((eb) => eb.fn.countAll<bigint>().as("n")).execute();
  assert.is(n, BigInt(every.length));
  const auto = new Kysely<DB>({ dialect: new ShardRouterScatterDialect({ client: f.client, merge: "auto" }) });
  assert.equal(await auto.selectFrom("accounts").select(["id", "balance"]).orderBy("balance", "desc").orderBy("id").limit(5).execute(), expected, "merge \"auto\": derived from the SQL");
  const write = await merged.insertInto("accounts").values({ id: "x", balance: 1n }).execute().catch((e: Error) => e);
  assert.match(String((write as Error).message), /SELECT only/);
  const tx = await merged.transaction().execute(async () => {}).catch((e: Error) => e);
  assert.match(String((tx as Error).message), /shard key/);
});

test("execute dialect: a key in WHERE pins its shard, a scan is merged as the SQL says, a multi-row insert lands on each key's shard", async () => {
  const routed = new Kysely<DB>({ dialect: new ShardRouterExecuteDialect({ client: f.client }) });
  const one = await routed.selectFrom("accounts").select(["id", "balance"]).where("id", "=", "acct-21").executeTakeFirstOrThrow();
  assert.equal(one, { id: "acct-21", balance: 1000n });

  const ids = ["kx-1", "kx-2", "kx-3", "kx-4", "kx-5", "kx-6"];
  const owners = new Set(await Promise.all(ids.map(async (id) => (await f.client.route(id)).shard)));
  assert.ok(owners.size > 1, "the keys span several shards, so the insert below is a multi-shard write");
  const inserted = await routed.insertInto("accounts").values(ids.map((id, i) => ({ id, balance: BigInt(i) }))).executeTakeFirstOrThrow();
  assert.is(inserted.numInsertedOrUpdatedRows, 6n);
  for (const [i, id] of ids.entries()) assert.equal(await f.onOwner(id, "select balance from accounts where id = $1", [id]), [{ balance: String(i) }], id);

  const updated = await routed.updateTable("accounts").set({ balance: 50n }).where("id", "=", "kx-1").executeTakeFirstOrThrow();
  assert.is(updated.numUpdatedRows, 1n);
  assert.equal(await f.onOwner("kx-1", "select balance from accounts where id = $1", ["kx-1"]), [{ balance: "50" }]);

  const top = await routed.selectFrom("accounts").select(["id", "balance"]).where("id", "like", "kx-%").orderBy("balance", "desc").orderBy("id").limit(3).execute();
  assert.equal(top, [{ id: "kx-1", balance: 50n }, { id: "kx-6", balance: 5n }, { id: "kx-5", balance: 4n }]);
  const [stats] = await routed.selectFrom("accounts")
    .select((eb) => [eb.fn.countAll<bigint>().as("n"), eb.fn.avg<string>("balance").as("mean")]).where("id", "like", "kx-%").execute();
  assert.equal([stats.n, Number(stats.mean).toFixed(4)], [6n, (65 / 6).toFixed(4)], "count summed, avg from the shards' sums and counts");
});

test("execute dialect: a DELETE without a key is refused unless allowScatterWrite; transactions are refused", async () => {
  const routed = new Kysely<DB>({ dialect: new ShardRouterExecuteDialect({ client: f.client }) });
  await routed.insertInto("accounts").values([{ id: "kd-1", balance: 1n }, { id: "kd-2", balance: 2n }, { id: "kd-3", balance: 3n }]).execute();
  const refused = await routed.deleteFrom("accounts").where("id", "like", "kd-%").execute().catch((e: unknown) => e);
  assert.ok(refused instanceof ShardRouterError && refused.code === Code.InvalidArgument, String(refused));
  assert.equal(await f.onOwner("kd-2", "select balance from accounts where id = 'kd-2'"), [{ balance: "2" }], "refused: nothing deleted");
  const wide = new Kysely<DB>({ dialect: new ShardRouterExecuteDialect({ client: f.client, allowScatterWrite: true }) });
  const deleted = await wide.deleteFrom("accounts").where("id", "like", "kd-%").executeTakeFirstOrThrow();
  assert.is(deleted.numDeletedRows, 3n);
  for (const id of ["kd-1", "kd-2", "kd-3"]) assert.equal(await f.onOwner(id, "select id from accounts where id = $1", [id]), []);
  const tx = await routed.transaction().execute(async () => {}).catch((e: Error) => e);
  assert.match(String((tx as Error).message), /ShardRouterDialect/);
});

test.run();
