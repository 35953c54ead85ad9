import { test } from "uvu";
import * as assert from "uvu/assert";
import { keyspaceId, murmur3 } from "../../server/placement/murmur3.js";

const utf8 = (s: string) => new TextEncoder().encode(s);

// Every expected value below was also recomputed by an independent pure-Python MurmurHash3_x86_32
// written from the reference C (int.from_bytes(block, 'little'), * 0xcc9e2d51, rotl 15,
// * 0x1b873593, h = rotl(h ^ k, 13) * 5 + 0xe6546b64, tail, h ^= len, fmix32), e.g.
//   python3 -c "print(murmur3_32('Zürich'.encode(), 0))"  ->  694770001
// The seeded vectors are also the ones published with MurmurHash3 ports (Wikipedia, SMHasher users).

test("published vectors, seed 0", () => {
  assert.is(murmur3(utf8(""), 0), 0);
  assert.is(murmur3(utf8("hello")), 613153351);
  assert.is(murmur3(utf8("The quick brown fox jumps over the lazy dog")), 0x2e4ff723);
  assert.is(murmur3(new Uint8Array([0, 0, 0, 0])), 0x2362f9de);
});

test("published vectors with a seed (seed is applied and treated as unsigned)", () => {
  assert.is(murmur3(utf8(""), 1), 0x514e28b7);
  assert.is(murmur3(utf8(""), 0xffffffff), 0x81f16f39);
  assert.is(murmur3(utf8("Hello, world!"), 1234), 0xfaf6cdb3);
  assert.is(murmur3(utf8("aaaa"), 0x9747b28c), 0x5a97808a);
  assert.is(murmur3(utf8("Hello, world!"), 0x9747b28c), 0x24884cba);
  assert.is(murmur3(utf8("The quick brown fox jumps over the lazy dog"), 0x9747b28c), 0x2fa826cd);
});

test("every tail length (0..3 leftover bytes), checked against the Python implementation", () => {
  assert.is(murmur3(utf8("abc")), 3017643002); // 3-byte tail only
  assert.is(murmur3(utf8("abcd1")), 309889682); // one block + 1-byte tail
  assert.is(murmur3(utf8("acct-42")), 2820860903); // one block + 3-byte tail
  assert.is(murmur3(utf8("user123")), 538840311);
});

test("results are unsigned 32-bit integers", () => {
  for (const s of ["", "a", "hello", "ü", "東京", "😀", "x".repeat(1000)]) {
    const h = murmur3(utf8(s));
    assert.ok(Number.isInteger(h) && h >= 0 && h <= 0xffffffff, `${s}: ${h}`);
  }
  assert.ok(murmur3(utf8("Hello, world!"), 1234) > 0x7fffffff, "a high-bit result must not come out negative");
});

test("keyspaceId hashes UTF-8 bytes, so non-ASCII keys don't collide", () => {
  assert.is(keyspaceId("ü"), murmur3(new Uint8Array([0xc3, 0xbc])));
  assert.is.not(keyspaceId("ü"), murmur3(new Uint8Array([0xfc])));
  assert.is(keyspaceId("ü"), 2017519274); // python: murmur3_32('ü'.encode())
  assert.is(murmur3(new Uint8Array([0xfc])), 3226243446); // python: murmur3_32(b'\xfc')
  assert.is(keyspaceId("Zürich"), 694770001);
  assert.is(keyspaceId("東京"), 2529104194);
  assert.is(keyspaceId("😀"), 3199479546); // astral: 4 UTF-8 bytes from a surrogate pair
  assert.is(keyspaceId("hello"), 613153351);
});

test("an integer key is hashed as its decimal text", () => {
  assert.is(keyspaceId(String(42)), murmur3(utf8("42")));
  assert.is(keyspaceId(String(-7n)), murmur3(utf8("-7")));
});

test("keyspaceId of short keys (a reused buffer) and long ones (their own) equals murmur3 of the key's UTF-8 bytes", () => {
  const keys = ["", "a", "acct-7", "ü", "日本語キー", "🔑", "x".repeat(255), "é".repeat(256), "日".repeat(256), "日".repeat(257), "k".repeat(10_000)];
  for (const key of keys) assert.is(keyspaceId(key), murmur3(utf8(key)), `${key.slice(0, 12)}… (${key.length})`);
  // A long key between two short ones leaves nothing behind in the buffer.
  const before = keyspaceId("abc");
  keyspaceId("z".repeat(700));
  assert.is(keyspaceId("abc"), before);
  assert.is(murmur3(utf8("abcdef"), 0, 3), murmur3(utf8("abc")), "the length argument");
});

test.run();
