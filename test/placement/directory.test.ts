import { Code } from "@connectrpc/connect";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { DirectoryStrategy, type DirectoryStore } from "../../server/placement/directory.js";
import { HashRingStrategy } from "../../server/placement/hash-ring.js";
import { keyspaceId } from "../../server/placement/murmur3.js";
import { assertRejectsConnect } from "./assert-connect-error.js";

/** In-memory stand-in for the catalog table, counting calls. First writer wins, like INSERT ... ON CONFLICT DO NOTHING. */
class MemoryDirectory implements DirectoryStore {
  readonly entries = new Map<string, string>();
  lookups = 0;
  assigns = 0;
  async lookup(key: string): Promise<string | undefined> {
    this.lookups++;
    return this.entries.get(key);
  }
  async assign(key: string, shard: string): Promise<string> {
    this.assigns++;
    if (!this.entries.has(key)) this.entries.set(key, shard);
    return this.entries.get(key)!;
  }
}

const shards = ["s0", "s1", "s2"].map((name) => ({ name, weight: 1 }));

test("a new key is assigned once, by the hash-ring fallback, then read back from the store", async () => {
  const store = new MemoryDirectory();
  const dir = new DirectoryStrategy(shards, store);
  const expected = new HashRingStrategy(shards).place("acct-1").shard;
  assert.equal(await dir.place("acct-1"), { shard: expected, keyspaceId: keyspaceId("acct-1") });
  assert.is(store.entries.get("acct-1"), expected);
  assert.is(store.assigns, 1);
  // Another router instance (empty cache) finds the entry and does not assign again.
  const other = new DirectoryStrategy(shards, store);
  assert.is((await other.place("acct-1")).shard, expected);
  assert.is(store.assigns, 1);
});

test("an existing entry wins over the fallback rule", async () => {
  const store = new MemoryDirectory();
  const fallback = new HashRingStrategy(shards).place("vip").shard;
  const elsewhere = shards.map((s) => s.name).find((s) => s !== fallback)!;
  store.entries.set("vip", elsewhere);
  assert.is((await new DirectoryStrategy(shards, store).place("vip")).shard, elsewhere);
  assert.is(store.assigns, 0);
});

test("first writer wins: if another router assigned the key between our lookup and assign, we use its shard", async () => {
  const store = new MemoryDirectory();
  const fallback = new HashRingStrategy(shards).place("raced").shard;
  const theirs = shards.map((s) => s.name).find((s) => s !== fallback)!;
  const racing: DirectoryStore = {
    lookup: async () => undefined, // we saw nothing...
    assign: async (key, shard) => {
      store.entries.set(key, theirs); // ...but the other router got there first
      return store.assign(key, shard);
    },
  };
  const dir = new DirectoryStrategy(shards, racing);
  assert.is((await dir.place("raced")).shard, theirs);
  assert.is(store.entries.get("raced"), theirs);
});

test("a cache hit does not call the store", async () => {
  const store = new MemoryDirectory();
  const dir = new DirectoryStrategy(shards, store);
  const first = await dir.place("acct-7");
  assert.is(store.lookups, 1);
  for (let i = 0; i < 5; i++) assert.equal(await dir.place("acct-7"), first);
  assert.is(store.lookups, 1);
  assert.is(store.assigns, 1);
});

test("concurrent first requests for one key make one lookup and one assign", async () => {
  const store = new MemoryDirectory();
  const dir = new DirectoryStrategy(shards, store);
  const results = await Promise.all(Array.from({ length: 10 }, () => dir.place("hot")));
  assert.is(new Set(results.map((r) => r.shard)).size, 1);
  assert.is(store.lookups, 1);
  assert.is(store.assigns, 1);
});

test("the cache is bounded: the least recently used entry is evicted", async () => {
  const store = new MemoryDirectory();
  const dir = new DirectoryStrategy(shards, store, { cacheSize: 2 });
  await dir.place("a");
  await dir.place("b");
  await dir.place("a"); // a is now more recent than b
  await dir.place("c"); // evicts b
  assert.is(store.lookups, 3);
  await dir.place("a");
  await dir.place("c");
  assert.is(store.lookups, 3, "a and c should still be cached");
  await dir.place("b");
  assert.is(store.lookups, 4, "b should have been evicted");
});

test("a store entry naming a shard outside the shard map is FailedPrecondition, and not cached", async () => {
  const store = new MemoryDirectory();
  store.entries.set("old", "s9");
  const dir = new DirectoryStrategy(shards, store);
  await assertRejectsConnect(() => dir.place("old"), Code.FailedPrecondition, `shard "s9", which is not in the current shard map`);
  await assertRejectsConnect(() => dir.place("old"), Code.FailedPrecondition, "'old'");
  assert.is(store.lookups, 2);
});

test("a failing store surfaces as Unavailable with the reason", async () => {
  const broken: DirectoryStore = {
    lookup: async () => {
      throw new Error("connection refused");
    },
    assign: async () => "s0",
  };
  const dir = new DirectoryStrategy(shards, broken);
  await assertRejectsConnect(() => dir.place("k"), Code.Unavailable, "directory could not look up key 'k': connection refused");
});

test("empty key is InvalidArgument and never reaches the store", async () => {
  const store = new MemoryDirectory();
  await assertRejectsConnect(() => new DirectoryStrategy(shards, store).place(""), Code.InvalidArgument, "must not be empty");
  assert.is(store.lookups, 0);
});

test("ownership mentions the fallback share", () => {
  const o = new DirectoryStrategy(shards, new MemoryDirectory()).ownership("s1");
  assert.is(o.keyspaceFraction, 0);
  assert.match(o.description, /^keys the directory assigns to it; new keys by hash ring \(\d+\.\d% of new keys\)$/);
});

test.run();
