// Global ids (NextIds): Snowflake-style 64-bit integers for primary keys of sharded tables.
//
//   bit 63      62 ........... 22   21 ...... 12   11 ...... 0
//   0 (sign)    milliseconds since   worker id      sequence
//               2025-01-01T00:00Z    (10 bits)      (12 bits)
//               (41 bits)
//
// The sign bit is always 0, so every id is a positive PostgreSQL bigint; 41 bits of milliseconds last
// until 2094. A router issues at most 4096 ids per millisecond (then it waits for the next one).
// Uniqueness rests on three rules: one worker id per router at a time (worker-lease.ts), ids of one
// worker id strictly increasing (this generator: it never reuses a millisecond it has left, and waits
// or refuses when the clock steps back), and a worker id taken over from another router only above
// the milliseconds that router could have used (the lease's floor and ceiling).
import { Code, ConnectError } from "@connectrpc/connect";

export const idEpochMs = Date.UTC(2025, 0, 1);
export const timestampBits = 41;
export const workerBits = 10;
export const sequenceBits = 12;
export const maxWorkers = 1 << workerBits;
const maxSequence = (1 << sequenceBits) - 1;
const maxOffsetMs = 2 ** timestampBits - 1;
/** The most ids one NextIds call may ask for. */
export const maxIdsPerCall = 10_000;

/** The parts of an id (for tests, docs and debugging). */
export function decodeId(id: bigint): { ms: number; workerId: number; sequence: number } {
  return {
    ms: Number(id >> BigInt(workerBits + sequenceBits)) + idEpochMs,
    workerId: Number((id >> BigInt(sequenceBits)) & BigInt(maxWorkers - 1)),
    sequence: Number(id & BigInt(maxSequence)),
  };
}

/** The worker id this router may use now, and the milliseconds it may use it for. */
export interface WorkerGrant {
  workerId: number;
  /** Ids must have a timestamp above this (Unix ms): the last one a previous holder could have used. */
  floorMs: number;
  /** Ids may have a timestamp up to this (Unix ms): what the catalog knows this router may have used. */
  ceilingMs: number;
}

export interface WorkerSource {
  /** The grant in force; throws (Unavailable, with the reason) when this router may issue no ids. */
  current(): WorkerGrant;
}

export interface SnowflakeObserver {
  issued(count: number): void;
  /** The clock read earlier than a millisecond already used: waited it out, or refused. */
  clockBackwards(behindMs: number, refused: boolean): void;
}

export interface SnowflakeOptions {
  worker: WorkerSource;
  /** Wall clock, Unix ms (default Date.now). */
  now?: () => number;
  /** Default: a timer. A test's fake clock advances itself here. */
  sleep?: (ms: number) => Promise<void>;
  /** A clock that steps back by up to this is waited out; further back, NextIds is refused. */
  maxBackwardsMs: number;
  observer?: SnowflakeObserver;
}

const unavailable = (message: string) => new ConnectError(message, Code.Unavailable);

export class Snowflake {
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  /** The last millisecond (Unix) and sequence used, and under which worker id. */
  private lastMs = -1;
  private lastSequence = maxSequence;
  private lastWorker = -1;
  /** Calls run one after another: each sees the state the one before left. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: SnowflakeOptions) {
    this.now = opts.now ?? Date.now;
    this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  /** `count` new ids, increasing, all above every id this generator issued before. */
  next(count: number): Promise<{ ids: bigint[]; workerId: number }> {
    if (!Number.isInteger(count) || count < 1 || count > maxIdsPerCall) {
      return Promise.reject(new ConnectError(`count must be between 1 and ${maxIdsPerCall}, got ${count}`, Code.InvalidArgument));
    }
    const run = this.queue.then(() => this.issue(count));
    this.queue = run.catch(() => {});
    return run;
  }

  private async issue(count: number): Promise<{ ids: bigint[]; workerId: number }> {
    const ids: bigint[] = [];
    let workerId = -1;
    let waitedBackwardsMs = 0;
    // Each millisecond gives up to 4096 ids; a clock that stops advancing must not spin for ever.
    let waitsLeft = Math.ceil(count / (maxSequence + 1)) * 4 + 8;
    while (ids.length < count) {
      const grant = this.opts.worker.current();
      if (workerId !== -1 && grant.workerId !== workerId) {
        // A new worker id mid-call: one response carries one worker id, so start the batch again
        // under the new one (the ids made so far are never handed out; the new ones are above them).
        ids.length = 0;
      }
      workerId = grant.workerId;
      // The first (ms, sequence) this worker may use next.
      let ms: number;
      let sequence: number;
      if (grant.workerId === this.lastWorker && this.lastSequence < maxSequence) [ms, sequence] = [this.lastMs, this.lastSequence + 1];
      else [ms, sequence] = [this.lastMs + 1, 0];
      if (ms <= grant.floorMs) [ms, sequence] = [grant.floorMs + 1, 0];
      const clock = Math.floor(this.now());
      if (clock < ms) {
        const behind = ms - clock;
        // Only the sequence ran out in the millisecond the clock still reads: wait for the next one.
        const exhausted = clock === this.lastMs && ms === this.lastMs + 1;
        if (!exhausted) {
          if (waitedBackwardsMs + behind > this.opts.maxBackwardsMs) {
            this.opts.observer?.clockBackwards(behind, true);
            throw unavailable(`the clock is ${behind} ms behind the last id issued with worker id ${grant.workerId} ` +
              `(more than ids.maxClockBackwardsMs = ${this.opts.maxBackwardsMs}): no ids until it catches up, so none is repeated`);
          }
          this.opts.observer?.clockBackwards(behind, false);
          waitedBackwardsMs += behind;
        }
        if (--waitsLeft < 0) throw unavailable("the clock does not advance: no ids can be issued");
        await this.sleep(behind);
        continue;
      }
      if (clock > ms) [ms, sequence] = [clock, 0];
      if (ms > grant.ceilingMs) {
        throw unavailable(`the clock (${new Date(ms).toISOString()}) is past what worker id ${grant.workerId}'s lease reserved ` +
          `(${new Date(grant.ceilingMs).toISOString()}); ids resume at its next renewal`);
      }
      if (ms - idEpochMs > maxOffsetMs || ms < idEpochMs) throw unavailable(`the clock (${new Date(ms).toISOString()}) is outside the id layout's range (2025 to 2094)`);
      const high = (BigInt(ms - idEpochMs) << BigInt(workerBits + sequenceBits)) | (BigInt(grant.workerId) << BigInt(sequenceBits));
      const last = Math.min(maxSequence, sequence + (count - ids.length) - 1);
      for (let s = sequence; s <= last; s++) ids.push(high | BigInt(s));
      this.lastMs = ms;
      this.lastSequence = last;
      this.lastWorker = grant.workerId;
    }
    this.opts.observer?.issued(ids.length);
    return { ids, workerId };
  }
}

/** A fixed worker id (ids.workerId, routers without a catalog): the operator keeps it unique. */
export function fixedWorker(workerId: number): WorkerSource {
  const grant = { workerId, floorMs: -1, ceilingMs: Number.POSITIVE_INFINITY };
  return { current: () => grant };
}

/** No worker id at all: every NextIds is refused, saying why. */
export function noWorker(reason: string): WorkerSource {
  return { current: () => { throw unavailable(reason); } };
}
