// Named crash points for fault-injection tests: the router SIGKILLs itself at a step of two-phase
// commit, exactly where a real crash would hurt. Off unless configured (transactions.failpoints) or
// set in SHARDROUTER_FAILPOINTS, e.g. "after_prepare" (first time) or "after_decision@5" (fifth time).
export const failpointNames = ["before_prepare", "after_prepare", "after_decision", "after_first_commit"] as const;
export type FailpointName = (typeof failpointNames)[number];

export class Failpoints {
  private readonly armed = new Map<string, number>();
  private readonly hits = new Map<string, number>();

  constructor(specs: string[]) {
    for (const spec of specs.flatMap((s) => s.split(",")).map((s) => s.trim()).filter(Boolean)) {
      const [name, nth = "1"] = spec.split("@");
      if (!(failpointNames as readonly string[]).includes(name) || !/^[1-9]\d*$/.test(nth)) {
        throw new Error(`failpoint "${spec}": use one of ${failpointNames.join(", ")}, optionally @N`);
      }
      this.armed.set(name, Number(nth));
    }
  }

  static fromEnv(configured: string[]): Failpoints {
    return new Failpoints([...configured, process.env.SHARDROUTER_FAILPOINTS ?? ""]);
  }

  /** Crashes the process, without any cleanup, on the armed hit of this point. */
  hit(name: FailpointName): void {
    const at = this.armed.get(name);
    if (at === undefined) return;
    const n = (this.hits.get(name) ?? 0) + 1;
    this.hits.set(name, n);
    if (n === at) {
      process.stderr.write(`failpoint ${name}@${at}: crashing\n`);
      process.kill(process.pid, "SIGKILL");
    }
  }
}
