import { test } from "uvu";
import * as assert from "uvu/assert";
import { LimitStep } from "../../server/execution/merge/limit.js";
import { col, rows, table } from "./helpers.js";

const columns = [col("id")];
const five = () => rows([0], [1], [2], [3], [4]);
const ids = (limit: bigint | undefined, offset: bigint, parts = [five()]) =>
  table(new LimitStep(limit, offset).apply({ columns, parts }).parts[0]!).map((r) => Number(r[0]));

test("limit only", () => {
  assert.equal(ids(2n, 0n), [0, 1]);
  assert.equal(ids(5n, 0n), [0, 1, 2, 3, 4]);
  assert.equal(ids(100n, 0n), [0, 1, 2, 3, 4]);
});

test("limit 0 returns no rows (it is not 'no limit')", () => {
  assert.equal(ids(0n, 0n), []);
  assert.equal(ids(0n, 2n), []);
});

test("offset then limit", () => {
  assert.equal(ids(2n, 1n), [1, 2]);
  assert.equal(ids(2n, 3n), [3, 4]);
  assert.equal(ids(2n, 4n), [4]);
  assert.equal(ids(10n, 2n), [2, 3, 4]);
});

test("offset only (no limit)", () => {
  assert.equal(ids(undefined, 0n), [0, 1, 2, 3, 4]);
  assert.equal(ids(undefined, 3n), [3, 4]);
});

test("offset at or past the end, including beyond Number precision", () => {
  assert.equal(ids(2n, 5n), []);
  assert.equal(ids(2n, 6n), []);
  assert.equal(ids(undefined, 18446744073709551615n), []);
  assert.equal(ids(18446744073709551615n, 1n), [1, 2, 3, 4]);
});

test("empty input and several parts (read in shard order)", () => {
  assert.equal(ids(3n, 0n, []), []);
  assert.equal(ids(3n, 0n, [[], []]), []);
  assert.equal(ids(3n, 1n, [rows([0], [1]), [], rows([2], [3])]), [1, 2, 3]);
});

test("negative bounds are rejected", () => {
  assert.throws(() => new LimitStep(-1n, 0n), /must be >= 0/);
  assert.throws(() => new LimitStep(1n, -1n), /must be >= 0/);
});

test("does not mutate its input", () => {
  const part = five();
  new LimitStep(1n, 1n).apply({ columns, parts: [part] });
  assert.is(part.length, 5);
});

test.run();
