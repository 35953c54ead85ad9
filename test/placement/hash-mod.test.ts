import { test } from "uvu";
import * as assert from "uvu/assert";
import { HashModStrategy } from "../../server/placement/hash-mod.js";

const shards = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `s${i}`, weight: 1 }));

test("keyspace id mod N over shards in config order", () => {
  const four = new HashModStrategy(shards(4));
  // murmur3("user123") = 538840311 (see murmur3.test.ts); 538840311 % 4 = 3, % 3 = 0
  assert.equal(four.place("user123"), { shard: "s3", keyspaceId: 538840311 });
  assert.is(new HashModStrategy(shards(3)).place("user123").shard, "s0");
  // murmur3("hello") = 613153351; % 4 = 3, and with the list reversed index 3 is s0
  assert.is(new HashModStrategy(shards(4).reverse()).place("hello").shard, "s0");
});

test("even spread, and going from 4 to 5 shards moves most keys (why hash_ring is the default)", () => {
  const four = new HashModStrategy(shards(4));
  const five = new HashModStrategy(shards(5));
  const counts = new Map<string, number>();
  let moved = 0;
  const n = 10_000;
  for (let i = 0; i < n; i++) {
    const key = `acct-${i}`;
    const a = four.place(key).shard;
    counts.set(a, (counts.get(a) ?? 0) + 1);
    if (five.place(key).shard !== a) moved++;
  }
  for (const [shard, c] of counts) assert.ok(c > 2250 && c < 2750, `${shard}: ${c}`);
  assert.ok(moved / n > 0.7, `moved ${moved}`);
});

test("ownership: exact keyspace fractions that sum to 1", () => {
  const three = new HashModStrategy(shards(3));
  const fractions = ["s0", "s1", "s2"].map((s) => three.ownership(s).keyspaceFraction);
  // 2^32 = 3 * 1431655765 + 1, so s0 owns one id more than the others
  assert.is(fractions[0] * 2 ** 32, 1431655766);
  assert.is(fractions[1] * 2 ** 32, 1431655765);
  assert.is(fractions.reduce((a, b) => a + b), 1);
  assert.ok(three.ownership("s2").description.includes("mod 3 = 2"));
});

test.run();
