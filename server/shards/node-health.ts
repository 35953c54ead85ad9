// What the router knows about a node from the node itself: reachable, writable or in recovery, its
// timeline and replication lag. Roles come from here, not from the configuration, so a promotion
// done by anyone (pg_promote, Patroni, an operator) is followed without a restart.
export type NodeStatus = "up" | "down" | "unknown";

export interface NodeHealth {
  status: NodeStatus;
  /** pg_is_in_recovery(): a replica. Until the first check, the configured role decides. */
  inRecovery: boolean;
  /** The node's timeline; it increases at each promotion (0: unknown). */
  timeline: number;
  /** WAL position: current (writable) or replayed (replica). */
  lsn: bigint;
  /** Seconds since the last replayed transaction, as the replica reports it. */
  replayAgeMs: number;
  lagMs: number;
  /** Writable but on an older timeline than its shard has seen: never written to. */
  fenced: boolean;
  /** Health checks failed in a row. */
  failedChecks: number;
  /** Why the last failed check failed (a TLS refusal, a login refused, …), for the log: no secrets. */
  failure?: string;
  checkedAt: number;
}

export function initialHealth(configuredRole: "primary" | "replica"): NodeHealth {
  return { status: "unknown", inRecovery: configuredRole === "replica", timeline: 0, lsn: 0n, replayAgeMs: 0, lagMs: 0, fenced: false, failedChecks: 0, checkedAt: 0 };
}

/** "16/B374D848" → a comparable number. */
export function parseLsn(text: string | null | undefined): bigint {
  if (!text) return 0n;
  const [hi, lo] = text.split("/");
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}
