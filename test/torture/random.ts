// A seeded random source, so a run's choices (its faults, their order and moments, every client's
// transfers) come back the same from `--seed S`. The timing of the processes does not: the same seed
// replays the same plan, not the same interleaving.

/** mulberry32: small, fast, and good enough to pick faults and accounts. */
export class Random {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** An integer in [low, high]. */
  between(low: number, high: number): number {
    return low + this.int(high - low + 1);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** An independent stream (e.g. one per client), so one consumer's draws do not shift another's. */
  fork(label: number): Random {
    return new Random(Math.imul(this.state ^ Math.imul(label + 1, 0x9e3779b1), 0x85ebca6b) ^ label);
  }
}

/** A fresh seed when none is given: printed, so the run can be reproduced. */
export function newSeed(): number {
  return Math.floor(Math.random() * 2 ** 31);
}
