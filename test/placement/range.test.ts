import { Code } from "@connectrpc/connect";
import { randomInt } from "node:crypto";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { keyspaceId } from "../../server/placement/murmur3.js";
import { compareCodePoints, parseIntegerKey, RangeStrategy } from "../../server/placement/range.js";
import { assertThrowsConnect } from "./assert-connect-error.js";

const shards = ["s0", "s1", "s2", "s3"].map((name) => ({ name, weight: 1 }));

const integers = new RangeStrategy(shards, {
  keyType: "integer",
  ranges: [
    { shard: "s0", lessThan: 0 },
    { shard: "s1", lessThan: 100 },
    { shard: "s2", lessThan: "200" }, // bounds may be strings (for values beyond 2^53)
    { shard: "s3" },
  ],
});

test("integer ranges: bounds are exclusive above, inclusive below", () => {
  const cases: [string, string][] = [
    ["-1", "s0"],
    ["0", "s1"],
    ["99", "s1"],
    ["100", "s2"],
    ["199", "s2"],
    ["200", "s3"],
    ["-5", "s0"],
    ["-9223372036854775808", "s0"],
    ["9223372036854775807", "s3"],
    ["123456789012345678901234567890", "s3"], // compared as BigInt, not as a lossy double
    ["007", "s1"],
    ["-0", "s1"],
  ];
  for (const [key, shard] of cases) assert.is(integers.place(key).shard, shard, `key ${key}`);
  assert.is(integers.place("150").keyspaceId, keyspaceId("150"));
});

test("integer ranges compare numerically, not as text", () => {
  assert.is(integers.place("99").shard, "s1"); // as text "99" > "100"
  assert.is(integers.place("1000").shard, "s3"); // as text "1000" < "200"
});

test("integer ranges: keys that are not integers are InvalidArgument, naming the key", () => {
  for (const key of ["1.5", "abc", "1e3", " 5", "+5", "0x10", "5 "]) {
    assertThrowsConnect(() => integers.place(key), Code.InvalidArgument, `'${key}' is not an integer`);
  }
  assertThrowsConnect(() => integers.place(""), Code.InvalidArgument, "shard key must not be empty");
});

test("parseIntegerKey", () => {
  assert.is(parseIntegerKey("-5"), -5n);
  assert.is(parseIntegerKey("18446744073709551616"), 18446744073709551616n);
  assert.is(parseIntegerKey("1.5"), undefined);
  assert.is(parseIntegerKey(""), undefined);
  assert.is(parseIntegerKey("-"), undefined);
});

test("string ranges use code-point (UTF-8 byte, Postgres C collation) order", () => {
  const strings = new RangeStrategy(shards, {
    keyType: "string",
    ranges: [
      { shard: "s0", lessThan: "m" },
      { shard: "s1", lessThan: "\uffff" },
      { shard: "s2" },
    ],
  });
  assert.is(strings.place("l").shard, "s0");
  assert.is(strings.place("lzzzz").shard, "s0");
  assert.is(strings.place("m").shard, "s1"); // exactly the bound: next range
  assert.is(strings.place("M").shard, "s0"); // 'M' (0x4d) < 'm' (0x6d)
  assert.is(strings.place("Zürich").shard, "s0");
  assert.is(strings.place("ü").shard, "s1");
  assert.is(strings.place("\uff5e").shard, "s1"); // U+FF5E, below U+FFFF
  // U+1F600 is above U+FFFF in code-point and UTF-8 order, but JS `<` on UTF-16 says
  // "😀" < "\uffff" (0xD83D < 0xFFFF) and would pick s1.
  assert.ok("😀" < "\uffff", "premise: JS string order differs here");
  assert.is(strings.place("😀").shard, "s2");
  assert.is(strings.place("\uffff").shard, "s2");
});

test("compareCodePoints agrees with UTF-8 byte order (Buffer.compare) on random strings", () => {
  // Draw from bands where UTF-16 and code-point order disagree: ASCII, Latin-1, U+E000.., astral.
  const pool = ["a", "b", "z", "é", "ü", "\ue000", "\uff5e", "\uffff", "😀", "𝄞", "\u{10ffff}", "東"];
  const randomString = () => Array.from({ length: randomInt(0, 5) }, () => pool[randomInt(pool.length)]).join("");
  for (let i = 0; i < 5000; i++) {
    const a = randomString();
    const b = randomString();
    const expected = Math.sign(Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8")));
    assert.is(Math.sign(compareCodePoints(a, b)), expected, `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
  }
});

test("ownership descriptions", () => {
  assert.equal(integers.ownership("s0"), { description: "keys < 0", keyspaceFraction: 0 });
  assert.is(integers.ownership("s2").description, "keys in [100, 200)");
  assert.is(integers.ownership("s3").description, "keys >= 200");
  const split = new RangeStrategy(shards, {
    keyType: "string",
    ranges: [{ shard: "s0", lessThan: "h" }, { shard: "s1", lessThan: "p" }, { shard: "s0" }],
  });
  assert.is(split.ownership("s0").description, 'keys < "h"; keys >= "p"');
  assert.is(split.ownership("s1").description, 'keys in ["h", "p")');
  assert.match(split.ownership("s3").description, /^no keys/);
  const single = new RangeStrategy(shards, { keyType: "integer", ranges: [{ shard: "s2" }] });
  assert.is(single.ownership("s2").description, "all keys");
  assert.is(single.place("-12").shard, "s2");
});

test.run();
