// How far the load has got (transfers settled), so faults can wait for their point of the load
// instead of for a clock time. A fault whose point is never reached is told so when the load ends.

export class Progress {
  private settled = 0;
  private ended = false;
  private waiters: { n: number; resolve: (reached: boolean) => void }[] = [];

  get count(): number {
    return this.settled;
  }

  /** One more transfer settled (acknowledged, rejected or failed). */
  bump(): void {
    this.settled++;
    this.waiters = this.waiters.filter((w) => (this.settled >= w.n ? (w.resolve(true), false) : true));
  }

  /** The load is over (or abandoned): nobody waits for a point it will not reach. */
  end(): void {
    this.ended = true;
    for (const w of this.waiters) w.resolve(this.settled >= w.n);
    this.waiters = [];
  }

  /** True once `n` transfers have settled; false if the load ended first. */
  reach(n: number): Promise<boolean> {
    if (this.settled >= n) return Promise.resolve(true);
    if (this.ended) return Promise.resolve(false);
    return new Promise((resolve) => this.waiters.push({ n, resolve }));
  }
}
