// What the lean transports' suites (node-grpc-transport, node-connect-transport) share: how a failed
// call is caught, an error reduced to what must match across clients, and waiting on a condition.
import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import { type ShardRouterClient, ShardRouterError } from "../../sdk/src/index.ts";
import { waitFor } from "../harness/router-cluster.js";

/** The ConnectError a call failed with; fails the test when the call succeeded or threw something else. */
export async function failure(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ConnectError, `a ConnectError, got ${String(err)}`);
    return err;
  }
  return assert.unreachable("expected the call to fail") as never;
}

/** Metadata that differs per call (date, request id). */
const perCall = new Set(["date", "x-request-id"]);

/** The error's code, message, details, metadata (names, or names and values) and Postgres fields. */
export function shape(err: ConnectError, withValues = false) {
  return {
    code: Code[err.code], message: err.rawMessage, details: err.details.map((d) => ("type" in d ? d.type : d.desc.typeName)),
    metadata: [...err.metadata.entries()].filter(([k]) => !perCall.has(k)).map(([k, v]) => (withValues ? `${k}: ${v}` : k)).sort(),
    postgres: err instanceof ShardRouterError ? err.postgres : undefined,
  };
}

/** Polls `check` on every turn of the event loop until it holds, or fails after `timeoutMs`. */
export async function waitUntil(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for a condition");
    await new Promise((r) => setImmediate(r));
  }
}

/**
 * A statement cancelled by its caller while it runs on Postgres: the call's error, once the router
 * has also stopped the statement there (the proof the cancel reached the shard).
 */
export async function cancelledWhileRunning(client: ShardRouterClient): Promise<ConnectError> {
  const marker = `cancel-probe-${randomUUID()}`;
  const shard = client.onShard("slow");
  const running = async () => (await shard.query<{ n: number }>(
    "select count(*)::int as n from pg_stat_activity where state = 'active' and query like $1", [`%${marker}%`],
  )).rows[0].n;
  const controller = new AbortController();
  const call = failure(shard.query(`select pg_sleep(30), '${marker}'`, [], { signal: controller.signal }));
  await waitFor("the statement to run on Postgres", async () => ((await running()) === 1 ? true : undefined));
  controller.abort();
  const err = await call;
  await waitFor("the router to cancel it on Postgres", async () => ((await running()) === 0 ? true : undefined));
  return err;
}
