import { test } from "uvu";
import * as assert from "uvu/assert";
import { legacyMd5Index, LegacyMd5ModStrategy } from "../../server/placement/legacy-md5-mod.js";
import { keyspaceId } from "../../server/placement/murmur3.js";

// Expected indexes computed independently, the way the old Go router did
// (binary.BigEndian.Uint64(md5([]byte(key))[:8]) % uint64(n)), with:
//   python3 -c "import hashlib; print([int.from_bytes(hashlib.md5(k.encode()).digest()[:8], 'big') % n for n in (3, 4)])"
const VECTORS: [key: string, n3: number, n4: number][] = [
  ["user123", 2, 1],
  ["acct-1", 2, 0],
  ["acct-2", 2, 3],
  ["acct-42", 2, 2],
  ["hello", 0, 2],
  ["Zürich", 2, 2],
  ["東京", 0, 3],
  ["😀", 1, 0],
  ["42", 1, 3],
  ["-7", 2, 0],
  ["tenant/0001", 2, 3],
  ["x", 2, 0],
];

const shards = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `s${i}`, weight: 1 }));

test("matches the Go router's md5 mod N for N = 3 and N = 4", () => {
  for (const [key, n3, n4] of VECTORS) {
    assert.is(legacyMd5Index(key, 3), n3, `${key} mod 3`);
    assert.is(legacyMd5Index(key, 4), n4, `${key} mod 4`);
  }
});

test("place() picks shards[index] in config order and still reports the murmur3 keyspace id", () => {
  const three = new LegacyMd5ModStrategy(shards(3));
  const four = new LegacyMd5ModStrategy(shards(4));
  for (const [key, n3, n4] of VECTORS) {
    assert.equal(three.place(key), { shard: `s${n3}`, keyspaceId: keyspaceId(key) });
    assert.is(four.place(key).shard, `s${n4}`);
  }
  // Config order, not names, decides: reversing the list reverses the answer.
  const reversed = new LegacyMd5ModStrategy(shards(4).reverse());
  assert.is(reversed.place("acct-2").shard, "s0"); // index 3 of [s3, s2, s1, s0]
});

test("ownership is described by md5, with no keyspace-id fraction", () => {
  const o = new LegacyMd5ModStrategy(shards(4)).ownership("s1");
  assert.is(o.keyspaceFraction, 0);
  assert.ok(o.description.includes("mod 4 = 1"), o.description);
});

test.run();
