import { Code } from "@connectrpc/connect";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { NullsOrder } from "../../gen/shardrouter/v1/router_pb.js";
import { SortStep } from "../../server/execution/merge/sort.js";
import { col, order, rows, table, throwsConnect } from "./helpers.js";

const columns = [col("k"), col("tag", "text", 25)];

test("sorts one part by several keys with NULL placement", () => {
  const input = rows([2, "a"], [null, "b"], [1, "c"], [2, "d"], [null, "e"]);
  const out = new SortStep([order("k", true, NullsOrder.LAST), order("tag", true)]).apply({ columns, parts: [input] });
  assert.equal(table(out.parts[0]!), [["2", "'d'"], ["2", "'a'"], ["1", "'c'"], ["NULL", "'e'"], ["NULL", "'b'"]]);
});

test("stable: equal keys keep their input order", () => {
  const input = rows([1, "first"], [0, "x"], [1, "second"], [1, "third"], [0, "y"]);
  const out = new SortStep([order("k")]).apply({ columns, parts: [input] });
  assert.equal(table(out.parts[0]!).map((r) => r[1]), ["'x'", "'y'", "'first'", "'second'", "'third'"]);
});

test("several parts are concatenated in shard order first, then sorted stably", () => {
  const out = new SortStep([order("k")]).apply({ columns, parts: [rows([1, "s0"], [0, "s0"]), [], rows([1, "s2"], [0, "s2"])] });
  assert.equal(table(out.parts[0]!), [["0", "'s0'"], ["0", "'s2'"], ["1", "'s0'"], ["1", "'s2'"]]);
  assert.is(out.parts.length, 1);
});

test("does not reorder its input array", () => {
  const input = rows([3, "a"], [1, "b"]);
  new SortStep([order("k")]).apply({ columns, parts: [input] });
  assert.equal(table(input).map((r) => r[0]), ["3", "1"]);
});

test("unknown column", () => {
  throwsConnect(() => new SortStep([order("nope")]).apply({ columns, parts: [[]] }), Code.InvalidArgument,
    'merge orderBy names unknown column "nope"; available columns: k, tag');
});

test.run();
