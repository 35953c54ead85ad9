import { Code, ConnectError } from "@connectrpc/connect";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Admission } from "../../server/shards/admission.js";
import { FifoQueue } from "../../server/shards/fifo-queue.js";

test("admits up to max at once, then queues in order", async () => {
  const a = new Admission(2, 10, "node n");
  assert.is(a.acquire(undefined), undefined);
  assert.is(a.acquire(undefined), undefined);
  const order: number[] = [];
  const w1 = a.acquire(undefined)!.then(() => order.push(1));
  const w2 = a.acquire(undefined)!.then(() => order.push(2));
  assert.is(a.queued, 2);
  a.release();
  await w1;
  assert.equal(order, [1]);
  assert.is(a.inUse, 2); // the slot passed to the waiter
  a.release();
  await w2;
  assert.equal(order, [1, 2]);
  a.release(); a.release();
  assert.is(a.inUse, 0);
});

test("a full queue fails fast with RESOURCE_EXHAUSTED naming the node", async () => {
  const a = new Admission(1, 1, "node s0-primary (127.0.0.1:1)");
  a.acquire(undefined);
  void a.acquire(undefined);
  const err = await a.acquire(undefined)!.then(() => undefined, (e) => e);
  assert.instance(err, ConnectError);
  assert.is(err.code, Code.ResourceExhausted);
  assert.ok(err.rawMessage.includes("s0-primary"));
});

test("a waiter whose deadline passes leaves the queue and never takes a slot", async () => {
  const a = new Admission(1, 5, "node n");
  a.acquire(undefined);
  const ctl = new AbortController();
  const waiting = a.acquire(ctl.signal)!;
  ctl.abort(new ConnectError("timed out", Code.DeadlineExceeded));
  const err = await waiting.then(() => undefined, (e) => e);
  assert.is(err.code, Code.DeadlineExceeded);
  assert.is(a.queued, 0);
  a.release();
  assert.is(a.inUse, 0); // not handed to the cancelled waiter
});

test("the FIFO keeps order across compaction", () => {
  const q = new FifoQueue<number>();
  let next = 0;
  for (let i = 0; i < 5000; i++) { q.push(i); q.push(i + 100000); assert.ok(q.shift() !== undefined); next++; }
  assert.is(q.length, 10000 - next);
  let prevSmall = -1;
  for (let x = q.shift(); x !== undefined; x = q.shift()) {
    if (x < 100000) { assert.ok(x > prevSmall); prevSmall = x; }
  }
  assert.is(q.length, 0);
});

test.run();
