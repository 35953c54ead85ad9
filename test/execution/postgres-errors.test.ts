// How a Postgres error becomes a Connect code: the SQLSTATE decides, with one exception, an internal
// error PostgreSQL raises when a publication is dropped under a concurrent write (retryable: ABORTED).
import { Code } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import { sqlstateOf, toConnectError } from "../../server/execution/postgres-errors.js";
import { test } from "../harness/uvu.js";

const where = { shard: "shard-0", node: "shard-0-primary", address: "127.0.0.1:5432" };
const pgError = (code: string, message: string) => Object.assign(new Error(message), { name: "PostgresError", code });

test("a publication dropped under a write is ABORTED (retry), other internal errors stay INTERNAL", () => {
  const dropped = toConnectError(pgError("XX000", "cache lookup failed for publication 16440"), where);
  assert.is(dropped.code, Code.Aborted);
  assert.is(sqlstateOf(dropped), "XX000");
  assert.is(toConnectError(pgError("XX000", "cache lookup failed for relation 16440"), where).code, Code.Internal);
  assert.is(toConnectError(pgError("XX000", "cache lookup failed for publication 1; and more"), where).code, Code.Internal);
});

test("the SQLSTATE decides otherwise", () => {
  assert.is(toConnectError(pgError("40001", "could not serialize access"), where).code, Code.Aborted);
  assert.is(toConnectError(pgError("23505", "duplicate key"), where).code, Code.AlreadyExists);
  assert.is(toConnectError(pgError("42P01", "relation does not exist"), where).code, Code.InvalidArgument);
});

test.run();
