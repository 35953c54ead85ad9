import { Code } from "@connectrpc/connect";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { ListStrategy } from "../../server/placement/list.js";
import { keyspaceId } from "../../server/placement/murmur3.js";
import { assertThrowsConnect } from "./assert-connect-error.js";

const shards = ["eu", "us", "apac"].map((name) => ({ name, weight: 1 }));
const values = { "eu-west": "eu", "eu-central": "eu", "us-east": "us", "ap-south": "apac" };

test("listed values go to their shard", () => {
  const list = new ListStrategy(shards, { values });
  assert.equal(list.place("eu-west"), { shard: "eu", keyspaceId: keyspaceId("eu-west") });
  assert.is(list.place("eu-central").shard, "eu");
  assert.is(list.place("us-east").shard, "us");
  assert.is(list.place("ap-south").shard, "apac");
});

test("an unlisted key with no default is NotFound, naming the key", () => {
  const list = new ListStrategy(shards, { values });
  assertThrowsConnect(() => list.place("xx"), Code.NotFound, "no shard for key 'xx' under the list strategy");
  assertThrowsConnect(() => list.place("EU-WEST"), Code.NotFound, "'EU-WEST'"); // exact, case-sensitive
  // Object-prototype names must not be mistaken for entries.
  assertThrowsConnect(() => list.place("constructor"), Code.NotFound, "'constructor'");
  assertThrowsConnect(() => list.place("__proto__"), Code.NotFound, "'__proto__'");
  assertThrowsConnect(() => list.place(""), Code.InvalidArgument, "shard key must not be empty");
});

test("an unlisted key goes to defaultShard when there is one", () => {
  const list = new ListStrategy(shards, { values, defaultShard: "us" });
  assert.is(list.place("sa-east").shard, "us");
  assert.is(list.place("eu-west").shard, "eu"); // listed values still win
});

test("ownership lists the values and the default", () => {
  const list = new ListStrategy(shards, { values, defaultShard: "us" });
  assert.equal(list.ownership("eu"), { description: "keys 'eu-west', 'eu-central'", keyspaceFraction: 0 });
  assert.is(list.ownership("us").description, "keys 'us-east'; every key not listed (default shard)");
  const many = new ListStrategy(shards, { values: Object.fromEntries(Array.from({ length: 13 }, (_, i) => [`r${i}`, "eu"])) });
  assert.ok(many.ownership("eu").description.endsWith("'r9' and 3 more"), many.ownership("eu").description);
  assert.match(many.ownership("us").description, /^no keys/);
});

test.run();
