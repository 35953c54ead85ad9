// Admits at most `max` statements at a time to a node's connection pool and queues at most
// `maxWaiting` more. Beyond that a caller fails fast with RESOURCE_EXHAUSTED instead of growing memory.
// Keeping in-flight ≤ max also means postgres.js never pipelines two statements on one connection,
// so cancelling a statement can never hit a different caller's statement.
import { Code, ConnectError } from "@connectrpc/connect";
import { FifoQueue } from "./fifo-queue.js";

interface Waiter { grant: () => void; fail: (err: unknown) => void; settled: boolean }

export class Admission {
  private active = 0;
  private waiting = 0;
  private readonly queue = new FifoQueue<Waiter>();

  constructor(readonly max: number, readonly maxWaiting: number, private readonly label: string) {}

  get inUse(): number { return this.active; }
  get queued(): number { return this.waiting; }

  /** Resolves when a slot is granted; the caller must call release() exactly once afterwards. */
  acquire(signal: AbortSignal | undefined): Promise<void> | undefined {
    if (this.active < this.max) { this.active++; return undefined; }
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (this.waiting >= this.maxWaiting) {
      return Promise.reject(new ConnectError(
        `${this.label} is overloaded: ${this.active} statements running and ${this.waiting} waiting (max ${this.maxWaiting})`,
        Code.ResourceExhausted,
      ));
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        if (waiter.settled) return;
        waiter.settled = true;
        this.waiting--;
        reject(abortError(signal!));
      };
      const waiter: Waiter = {
        settled: false,
        grant: () => { signal?.removeEventListener("abort", onAbort); resolve(); },
        fail: reject,
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiting++;
      this.queue.push(waiter);
    });
  }

  release(): void {
    for (let w = this.queue.shift(); w; w = this.queue.shift()) {
      if (w.settled) continue; // gave up while waiting
      w.settled = true;
      this.waiting--;
      w.grant(); // the slot passes straight to the next waiter
      return;
    }
    this.active--;
  }
}

/** The error for a caller whose deadline passed or who went away. */
export function abortError(signal: AbortSignal): ConnectError {
  const reason: unknown = signal.reason;
  if (reason instanceof ConnectError) return reason;
  return new ConnectError("the request was cancelled", Code.Canceled);
}
