import { createHash } from "node:crypto";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { DEFAULT_VNODES, HashRingStrategy } from "../../server/placement/hash-ring.js";
import { keyspaceId } from "../../server/placement/murmur3.js";
import type { ShardInfo } from "../../server/placement/strategy.js";

const shards = (...names: string[]): ShardInfo[] => names.map((name) => ({ name, weight: 1 }));

// 10,000 pseudo-random keys: sha256 of a counter, so a failure reproduces exactly (fresh random keys
// would make this test flaky on rare unlucky draws instead of reporting a real regression).
const KEYS = Array.from({ length: 10_000 }, (_, i) => `acct-${createHash("sha256").update(`seed-1/${i}`).digest("hex").slice(0, 16)}`);

function countByShard(ring: HashRingStrategy, keys: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const key of keys) {
    const { shard } = ring.place(key);
    counts.set(shard, (counts.get(shard) ?? 0) + 1);
  }
  return counts;
}

test("4 shards: each gets within ±10% of an even share of 10,000 keys", () => {
  const ring = new HashRingStrategy(shards("s0", "s1", "s2", "s3"));
  const counts = countByShard(ring, KEYS);
  console.log(`    4 shards, ${DEFAULT_VNODES} vnodes: ${[...counts].map(([s, c]) => `${s}=${c}`).join(" ")}`);
  assert.is(counts.size, 4);
  for (const [shard, c] of counts) assert.ok(c >= 2250 && c <= 2750, `${shard} got ${c} keys`);
});

test("adding a 5th shard moves 15-25% of keys, and only onto the new shard", () => {
  const before = new HashRingStrategy(shards("s0", "s1", "s2", "s3"));
  const after = new HashRingStrategy(shards("s0", "s1", "s2", "s3", "s4"));
  let moved = 0;
  for (const key of KEYS) {
    const a = before.place(key).shard;
    const b = after.place(key).shard;
    if (a !== b) {
      moved++;
      assert.is(b, "s4", `${key} moved ${a} -> ${b}, between two old shards`);
    }
  }
  console.log(`    4 -> 5 shards moved ${moved} of ${KEYS.length} keys`);
  assert.ok(moved >= 1500 && moved <= 2500, `moved ${moved}`);
});

test("the ring depends on shard names, not their order in the config", () => {
  const a = new HashRingStrategy(shards("s0", "s1", "s2", "s3"));
  const b = new HashRingStrategy(shards("s3", "s1", "s0", "s2"));
  for (const key of KEYS.slice(0, 2000)) assert.is(b.place(key).shard, a.place(key).shard, key);
});

test("deterministic: two separately built rings agree, and the keyspace id is murmur3 of the key", () => {
  const a = new HashRingStrategy(shards("alpha", "beta", "gamma"));
  const b = new HashRingStrategy(shards("alpha", "beta", "gamma"));
  for (const key of [...KEYS.slice(0, 1000), "Zürich", "東京", "😀", "42", "-7"]) {
    const pa = a.place(key);
    assert.equal(b.place(key), pa);
    assert.is(pa.keyspaceId, keyspaceId(key));
  }
});

test("a shard of weight 2 gets about twice the keys of a weight-1 shard", () => {
  const ring = new HashRingStrategy([
    { name: "big", weight: 2 },
    { name: "a", weight: 1 },
    { name: "b", weight: 1 },
  ]);
  const counts = countByShard(ring, KEYS);
  const big = counts.get("big")!;
  const small = (counts.get("a")! + counts.get("b")!) / 2;
  console.log(`    weights 2/1/1: big=${big} a=${counts.get("a")} b=${counts.get("b")}`);
  assert.ok(big / small > 1.8 && big / small < 2.2, `ratio ${big / small}`);
  assert.ok(Math.abs(ring.ownership("big").keyspaceFraction - 0.5) < 0.03, ring.ownership("big").description);
  assert.ok(ring.ownership("big").description.startsWith(`${2 * DEFAULT_VNODES} ring points`));
});

test("ownership: exact arc fractions that sum to 1 and agree with where keys land", () => {
  const ring = new HashRingStrategy(shards("s0", "s1", "s2", "s3"));
  const fractions = ["s0", "s1", "s2", "s3"].map((s) => ring.ownership(s).keyspaceFraction);
  assert.ok(Math.abs(fractions.reduce((x, y) => x + y) - 1) < 1e-12, `sum ${fractions}`);
  for (const f of fractions) assert.ok(f > 0.225 && f < 0.275, `fraction ${f}`);
  const counts = countByShard(ring, KEYS);
  // 10,000 samples: the observed share is within ~4 standard deviations (0.0175) of the arc share.
  ["s0", "s1", "s2", "s3"].forEach((s, i) => {
    assert.ok(Math.abs(counts.get(s)! / KEYS.length - fractions[i]) < 0.0175, `${s}: ${counts.get(s)} vs ${fractions[i]}`);
  });
  assert.match(ring.ownership("s0").description, /^1024 ring points, \d+\.\d% of the keyspace$/);
  assert.is(ring.ownership("nope").keyspaceFraction, 0);
});

test("matches a brute-force reading of the spec, including keys that wrap past the last point", () => {
  // Spec: shard `name` has points murmur3(utf8(`${name}#${i}`)) for i < vnodes * weight; a key goes
  // to the first point >= its keyspace id, wrapping to the lowest point.
  const infos: ShardInfo[] = [{ name: "x", weight: 1 }, { name: "y", weight: 2 }, { name: "z", weight: 1 }];
  const vnodes = 2;
  const points = infos.flatMap((s) =>
    Array.from({ length: vnodes * s.weight }, (_, i) => ({ p: keyspaceId(`${s.name}#${i}`), shard: s.name })),
  );
  const lowest = points.reduce((a, b) => (b.p < a.p ? b : a));
  const highest = points.reduce((a, b) => (b.p > a.p ? b : a));
  // Premise: the wrap is only tested if the lowest and highest points belong to different shards.
  assert.is.not(lowest.shard, highest.shard);
  const ring = new HashRingStrategy(infos, { vnodes });
  let wrapped = 0;
  for (const key of KEYS) {
    const id = keyspaceId(key);
    const above = points.filter((pt) => pt.p >= id);
    const expected = above.length ? above.reduce((a, b) => (b.p < a.p ? b : a)).shard : lowest.shard;
    if (!above.length) wrapped++;
    assert.is(ring.place(key).shard, expected, `${key} (id ${id})`);
  }
  assert.ok(wrapped > 0, "some keys should lie above the highest point");
  // A single point owns the whole ring.
  const one = new HashRingStrategy(shards("only"), { vnodes: 1 });
  assert.is(one.ownership("only").keyspaceFraction, 1);
  assert.is(one.place("anything").shard, "only");
});

test("rejects bad vnodes", () => {
  assert.throws(() => new HashRingStrategy(shards("s0"), { vnodes: 0 }), /vnodes: must be an integer from 1 to 10000/);
  assert.throws(() => new HashRingStrategy(shards("s0"), { vnodes: 1.5 }), /vnodes/);
  assert.throws(() => new HashRingStrategy([{ name: "s0", weight: 5000 }], { vnodes: 1000 }), /5000000 ring points, over the limit/);
});

test.run();
