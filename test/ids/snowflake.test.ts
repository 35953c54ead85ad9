// The id generator (server/ids/snowflake.ts) with an injected clock: the layout, increasing ids,
// sequence exhaustion within a millisecond, a clock turned back a little (waited out) or a lot
// (refused), a worker id taken over above its floor, and the lease's ceiling.
import { Code } from "@connectrpc/connect";
import * as assert from "uvu/assert";
import { decodeId, fixedWorker, idEpochMs, maxIdsPerCall, noWorker, Snowflake, type WorkerGrant } from "../../server/ids/snowflake.js";
import { failure } from "../harness/failure.js";
import { test } from "../harness/uvu.js";

/** A wall clock a test moves by hand; sleep() moves it forward by what was asked. */
function fakeClock(start = Date.UTC(2026, 0, 1)) {
  const clock = { ms: start, slept: [] as number[], now: () => clock.ms, sleep: async (ms: number) => { clock.slept.push(ms); clock.ms += ms; } };
  return clock;
}

function generator(clock: ReturnType<typeof fakeClock>, opts: { maxBackwardsMs?: number; worker?: () => WorkerGrant } = {}) {
  const events = { issued: 0, waited: [] as number[], refused: [] as number[] };
  const snowflake = new Snowflake({
    worker: opts.worker ? { current: opts.worker } : fixedWorker(7),
    now: clock.now, sleep: clock.sleep, maxBackwardsMs: opts.maxBackwardsMs ?? 5,
    observer: { issued: (n) => { events.issued += n; }, clockBackwards: (ms, refused) => (refused ? events.refused : events.waited).push(ms) },
  });
  return { snowflake, events };
}

function assertIncreasing(ids: bigint[], after = -1n): void {
  let last = after;
  for (const [i, id] of ids.entries()) {
    assert.ok(id > last, `id ${i} (${id}) is not above the one before (${last})`);
    last = id;
  }
}

test("layout: 41 bits of ms since 2025-01-01, 10 bits of worker id, 12 of sequence; positive in a bigint", async () => {
  const clock = fakeClock(Date.UTC(2026, 5, 1, 12, 0, 0, 123));
  const { snowflake } = generator(clock);
  const { ids, workerId } = await snowflake.next(3);
  assert.is(workerId, 7);
  assert.equal(ids.map(decodeId), [0, 1, 2].map((sequence) => ({ ms: clock.ms, workerId: 7, sequence })));
  assert.is(ids[0], (BigInt(clock.ms - idEpochMs) << 22n) | (7n << 12n));
  // The last millisecond the layout holds (2094) still gives a positive int8.
  const end = fakeClock(idEpochMs + 2 ** 41 - 1);
  const [last] = (await generator(end).snowflake.next(1)).ids;
  assert.ok(last > 0n && last <= 2n ** 63n - 1n, String(last));
  const beyond = await failure(generator(fakeClock(idEpochMs + 2 ** 41)).snowflake.next(1));
  assert.is(beyond.code, Code.Unavailable);
});

test("increasing and unique across calls and across sequence exhaustion (4096 per ms: waits for the next ms)", async () => {
  const clock = fakeClock();
  const { snowflake, events } = generator(clock, { maxBackwardsMs: 0 });
  const all: bigint[] = [];
  for (const n of [1, 4095, 1, 10_000, 3]) all.push(...(await snowflake.next(n)).ids);
  assert.is(all.length, 14_100);
  assertIncreasing(all);
  assert.is(new Set(all).size, all.length);
  // The clock never moved but by the generator's own waits: one ms each time a ms ran out.
  assert.ok(clock.slept.length >= 3 && clock.slept.every((ms) => ms === 1), JSON.stringify(clock.slept));
  assert.equal(events.waited, [], "sequence exhaustion is no clock step back");
  assert.is(events.issued, 14_100);
  const perMs = new Map<number, number>();
  for (const id of all) perMs.set(decodeId(id).ms, (perMs.get(decodeId(id).ms) ?? 0) + 1);
  assert.ok(Math.max(...perMs.values()) <= 4096);
});

test("a clock turned back by a small step is waited out: no repeat, no id at or below the last", async () => {
  const clock = fakeClock();
  const { snowflake, events } = generator(clock, { maxBackwardsMs: 5 });
  const first = (await snowflake.next(10)).ids;
  clock.ms -= 3; // NTP steps the clock back 3 ms
  const second = (await snowflake.next(10)).ids;
  assertIncreasing(second, first.at(-1)!);
  assert.equal(events.waited, [3], "waited until the clock read the last ms used again");
  assert.equal(clock.slept, [3]);
  assert.equal(events.refused, []);
  // The same millisecond goes on where its sequence stopped.
  assert.equal(decodeId(second[0]), { ...decodeId(first.at(-1)!), sequence: 10 });
});

test("a clock turned back by a large step is refused (unavailable, saying why) until it catches up; ids then go on above the last", async () => {
  const clock = fakeClock();
  const { snowflake, events } = generator(clock, { maxBackwardsMs: 5 });
  const first = (await snowflake.next(5)).ids;
  clock.ms -= 60_000;
  const err = await failure(snowflake.next(1));
  assert.is(err.code, Code.Unavailable);
  assert.match(err.rawMessage, /clock is 60000 ms behind the last id/);
  assert.match(err.rawMessage, "ids.maxClockBackwardsMs");
  assert.equal(events.refused, [60_000]);
  assert.equal(clock.slept, [], "no waiting on a large step");
  clock.ms += 59_998; // still 2 ms behind: within the bound, waited out
  const after = (await snowflake.next(5)).ids;
  assertIncreasing(after, first.at(-1)!);
  assert.equal(events.waited, [2]);
});

test("the waits of one call are bounded together: a clock that keeps falling back is refused", async () => {
  const clock = fakeClock();
  const snowflake = new Snowflake({
    worker: fixedWorker(1), now: clock.now, maxBackwardsMs: 5,
    sleep: async (ms) => { clock.ms += ms - 4; }, // each wait ends 4 ms short
  });
  await snowflake.next(1);
  clock.ms -= 3;
  const err = await failure(snowflake.next(1));
  assert.is(err.code, Code.Unavailable);
});

test("concurrent calls get disjoint, increasing batches", async () => {
  const clock = fakeClock();
  const { snowflake } = generator(clock);
  const batches = await Promise.all([5000, 1, 3000, 7].map((n) => snowflake.next(n)));
  const all = batches.flatMap((b) => b.ids);
  assertIncreasing(all); // in call order
  assert.is(new Set(all).size, 8008);
});

test("a worker id taken over: ids only above the previous owner's floor (waits when close, refuses when far)", async () => {
  const clock = fakeClock();
  let grant: WorkerGrant = { workerId: 3, floorMs: clock.ms + 2, ceilingMs: clock.ms + 10_000 };
  const { snowflake } = generator(clock, { worker: () => grant });
  const [id] = (await snowflake.next(1)).ids;
  assert.is(decodeId(id).ms, grant.floorMs + 1);
  grant = { workerId: 4, floorMs: clock.ms + 1000, ceilingMs: clock.ms + 10_000 };
  assert.is((await failure(snowflake.next(1))).code, Code.Unavailable);
  // A new worker id mid-stream: still above everything issued, and on a new millisecond.
  grant = { workerId: 5, floorMs: -1, ceilingMs: clock.ms + 10_000 };
  const [next] = (await snowflake.next(1)).ids;
  assert.ok(next > id && decodeId(next).ms > decodeId(id).ms && decodeId(next).workerId === 5);
});

test("past the lease's ceiling (the clock ran ahead of the renewals): refused", async () => {
  const clock = fakeClock();
  const { snowflake } = generator(clock, { worker: () => ({ workerId: 1, floorMs: -1, ceilingMs: clock.ms - 1 }) });
  const err = await failure(snowflake.next(1));
  assert.is(err.code, Code.Unavailable);
  assert.match(err.rawMessage, "lease reserved");
});

test("count out of range is invalid_argument; no worker id is unavailable with the reason", async () => {
  const { snowflake } = generator(fakeClock());
  for (const n of [0, -1, maxIdsPerCall + 1, 1.5]) {
    const err = await failure(snowflake.next(n));
    assert.is(err.code, Code.InvalidArgument, String(n));
    assert.match(err.rawMessage, "between 1 and 10000");
  }
  const none = new Snowflake({ worker: noWorker("no catalog and no ids.workerId"), maxBackwardsMs: 5 });
  const err = await failure(none.next(1));
  assert.is(err.code, Code.Unavailable);
  assert.match(err.rawMessage, "no catalog and no ids.workerId");
});

test.run();
