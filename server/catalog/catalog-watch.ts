// How a router keeps up with something in the catalog: it looks when a notification arrives and
// also every pollMs, so a lost notification or a dropped LISTEN connection only delays it. Looks
// never overlap: a call during one gets that one and one more after it. Stopping does not wait out
// a catalog that hangs: a look in progress only reads, and `stopped` keeps it from acting.
export interface Listening { unlisten(): Promise<void> }

export class CatalogWatch {
  private timer: NodeJS.Timeout | undefined;
  private listening: Listening | undefined;
  private checking: Promise<void> | undefined;
  private again = false;
  stopped = false;

  /** `look` throws when the catalog is unreachable: the current state stays, the next poll tries again. */
  constructor(private readonly look: () => Promise<void>, private readonly pollMs: number, private readonly onPoll?: () => void) {}

  /** Listens (through `listen`, which calls back on each notification) and starts polling. */
  async start(listen: (notified: () => void) => Promise<Listening>): Promise<void> {
    this.listening = await listen(() => void this.check());
    this.timer = setInterval(() => {
      this.onPoll?.();
      void this.check();
    }, this.pollMs);
    this.timer.unref();
  }

  check(): Promise<void> {
    if (this.checking) {
      this.again = true;
      return this.checking;
    }
    this.checking = (async () => {
      do {
        this.again = false;
        try {
          // Bounded: a query stuck on a dead connection must not hold every later look behind it.
          await within(Math.max(5000, 5 * this.pollMs), this.look());
        } catch {
          // unreachable catalog: see the constructor
        }
      } while (this.again && !this.stopped);
    })().finally(() => { this.checking = undefined; });
    return this.checking;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    // UNLISTEN is a query: on a catalog that cannot be reached it would wait for the reconnect forever.
    await within(1000, this.listening?.unlisten().catch(() => {}));
    await within(1000, this.checking);
  }
}

/** Waits for `p` at most `ms`; its failure (then or later) is dropped, as every caller here would. */
async function within(ms: number, p: Promise<unknown> | undefined): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p?.catch(() => {}), new Promise((r) => { timer = setTimeout(r, ms); })]);
  clearTimeout(timer);
}
