// @shardrouter/sdk/drizzle on real shards: a Drizzle database per shard key (drizzle-orm/pg-proxy
// underneath) runs on that key's shard, maps positional rows ("all") into objects, joins within the
// shard, and db.transaction() is an interactive transaction there: commit, tx.rollback(), a thrown
// error, nested transactions as savepoints.
import { eq, sql } from "drizzle-orm";
import { bigint, pgTable, text } from "drizzle-orm/pg-core";
import * as assert from "uvu/assert";
import { drizzle } from "../../sdk/src/drizzle.ts";
import { hook, test } from "../harness/uvu.js";
import { type AdapterFixture, startAdapterFixture } from "./fixtures.js";

const accounts = pgTable("accounts", { id: text("id").primaryKey(), balance: bigint("balance", { mode: "bigint" }).notNull() });
const orders = pgTable("orders", {
  id: text("id").primaryKey(),
  accountId: text("account_id").notNull().references(() => accounts.id),
  amount: bigint("amount", { mode: "number" }).notNull(),
});

let f: AdapterFixture;
const db = (key: string) => drizzle(f.client, key, { schema: { accounts, orders } });

test.before(hook(async () => {
  f = await startAdapterFixture();
}));

test.after(hook(async () => {
  await f?.stop();
}));

test("insert, select and update run on the shard that owns the key; rows map by position", async () => {
  const id = "drizzle-1";
  await db(id).insert(accounts).values({ id, balance: 100n });
  assert.equal(await f.onOwner(id, "select balance from accounts where id = $1", [id]), [{ balance: "100" }], "the row is on the owner shard");
  await db(id).update(accounts).set({ balance: sql`${accounts.balance} + 5` }).where(eq(accounts.id, id));
  const rows = await db(id).select({ balance: accounts.balance, id: accounts.id }).from(accounts).where(eq(accounts.id, id));
  assert.equal(rows, [{ balance: 105n, id }], "selected in another order than the table's: mapped by position");
  const returned = await db(id).delete(accounts).where(eq(accounts.id, id)).returning({ id: accounts.id });
  assert.equal(returned, [{ id }]);
});

test("a join within the shard, and the relational query API", async () => {
  const id = "acct-21";
  await db(id).insert(orders).values([{ id: "drizzle-o1", accountId: id, amount: 30 }, { id: "drizzle-o2", accountId: id, amount: 12 }]);
  const joined = await db(id).select({ id: accounts.id, balance: accounts.balance, amount: orders.amount })
    .from(accounts).innerJoin(orders, eq(orders.accountId, accounts.id)).where(eq(accounts.id, id)).orderBy(orders.amount);
  assert.equal(joined, [{ id, balance: 1000n, amount: 12 }, { id, balance: 1000n, amount: 30 }]);
  const found = await db(id).query.accounts.findFirst({ where: eq(accounts.id, id) });
  assert.equal(found, { id, balance: 1000n });
  const raw = await db(id).execute(sql`select count(*)::int as n from orders where account_id = ${id}`);
  assert.equal(raw, [{ n: 2 }], "execute() gets objects");
});

test("db.transaction(): commits; tx.rollback() and a thrown error roll back", async () => {
  const id = "acct-22";
  await db(id).transaction(async (tx) => {
    await tx.update(accounts).set({ balance: 800n }).where(eq(accounts.id, id));
    await tx.insert(orders).values({ id: "drizzle-t1", accountId: id, amount: 200 });
    const [inside] = await tx.select({ balance: accounts.balance }).from(accounts).where(eq(accounts.id, id));
    assert.is(inside.balance, 800n, "read-your-writes");
    assert.equal(await f.onOwner(id, "select balance from accounts where id = $1", [id]), [{ balance: "1000" }], "not visible before commit");
  });
  assert.equal(await f.onOwner(id, "select balance from accounts where id = $1", [id]), [{ balance: "800" }]);

  const rolled = await db(id).transaction(async (tx) => {
    await tx.update(accounts).set({ balance: 1n }).where(eq(accounts.id, id));
    tx.rollback();
  }).catch((e: Error) => e);
  assert.match(String((rolled as Error).message), /Rollback/i);
  const thrown = await db(id).transaction(async (tx) => {
    await tx.update(accounts).set({ balance: 2n }).where(eq(accounts.id, id));
    throw new Error("no");
  }).catch((e: Error) => e);
  assert.is((thrown as Error).message, "no");
  assert.equal(await f.onOwner(id, "select balance from accounts where id = $1", [id]), [{ balance: "800" }]);
  await f.noOpenTransactions();
});

test("nested transactions are savepoints; isolation level reaches Postgres", async () => {
  const id = "acct-23";
  await db(id).transaction(async (tx) => {
    const [{ level }] = await tx.execute<{ level: string }>(sql`select current_setting('transaction_isolation') as level`);
    assert.is(level, "serializable");
    await tx.update(accounts).set({ balance: 600n }).where(eq(accounts.id, id));
    await tx.transaction(async (inner) => {
      await inner.insert(orders).values({ id: "drizzle-sp", accountId: id, amount: 1 });
      inner.rollback();
    }).catch(() => {});
  }, { isolationLevel: "serializable" });
  assert.equal(await f.onOwner(id, "select balance from accounts where id = $1", [id]), [{ balance: "600" }]);
  assert.equal(await f.onOwner(id, "select id from orders where id = 'drizzle-sp'"), [], "the inner transaction rolled back to its savepoint");
  await f.noOpenTransactions();
});

test.run();
