import { Code, ConnectError } from "@connectrpc/connect";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { NodeUnreachableError } from "../../server/shards/node-unreachable.js";

test("only real node failures are NodeUnreachableErrors (a Postgres error must not open a breaker)", () => {
  const failure = new NodeUnreachableError("shard s0 is unavailable: connection refused", "s0-primary");
  assert.ok(failure instanceof NodeUnreachableError);
  assert.ok(failure instanceof ConnectError);
  assert.is(failure.code, Code.Unavailable);
  assert.not.ok(new ConnectError("syntax error", Code.InvalidArgument) instanceof NodeUnreachableError);
  assert.not.ok(new ConnectError("also unavailable, but not a node", Code.Unavailable) instanceof NodeUnreachableError);
  assert.not.ok(new Error("x") instanceof NodeUnreachableError);
});

test.run();
