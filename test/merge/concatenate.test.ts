import { test } from "uvu";
import * as assert from "uvu/assert";
import { ConcatenateStep } from "../../server/execution/merge/concatenate.js";
import { col, rows, table } from "./helpers.js";

const columns = [col("id")];

test("concatenates parts in shard order, keeping each shard's row order", () => {
  const out = new ConcatenateStep().apply({ columns, parts: [rows([3], [1]), rows([2]), rows([9], [0])] });
  assert.is(out.columns, columns);
  assert.is(out.parts.length, 1);
  assert.equal(table(out.parts[0]!), [["3"], ["1"], ["2"], ["9"], ["0"]]);
});

test("empty parts and no parts", () => {
  const step = new ConcatenateStep();
  assert.equal(table(step.apply({ columns, parts: [[], rows([1]), [], rows([2])] }).parts[0]!), [["1"], ["2"]]);
  assert.equal(step.apply({ columns, parts: [[], []] }).parts, [[]]);
  assert.equal(step.apply({ columns, parts: [] }).parts, [[]]);
});

test("does not mutate its input", () => {
  const parts = [rows([1]), rows([2])];
  new ConcatenateStep().apply({ columns, parts });
  assert.equal(parts.map((p) => p.length), [1, 1]);
});

test.run();
