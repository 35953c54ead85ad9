// The bank workload shared by test/transactions/bank.test.ts and the torture command (test/torture):
// a client that retries a Transfer by the same request_id until it gets a definite answer, a ledger
// of what the router acknowledged, and the invariants the shards must then satisfy.
// (Not a test file: the runner only picks up *.test.ts.)
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type postgres from "postgres";
import type { RouterService } from "../../gen/shardrouter/v1/router_pb.js";
import type { TransferResponse } from "../../gen/shardrouter/v1/transactions_pb.js";

/** What a crashed router, a restarted or paused shard or a lock wait may answer: retried with the same request_id. */
export const retryableCodes: ReadonlySet<Code> = new Set([Code.Unavailable, Code.Aborted, Code.DeadlineExceeded]);

export interface TransferRequest { from: string; to: string; amount: bigint; requestId: string }
export interface Acknowledged extends TransferRequest { transactionId: string }

/** A call that has not settled yet: what a hung client is waiting for. */
export interface InFlight { request: TransferRequest; startedAt: number; attempts: number; lastError?: string; codes: Code[] }

export interface RetryOptions {
  /** The router to call now; read at every attempt, because a supervisor may have replaced it. */
  client: () => Client<typeof RouterService>;
  /** Deadline of one attempt (default 10 s): a call can never wait longer than this. */
  callTimeoutMs?: number;
  /** Attempts at most (default 200). */
  maxAttempts?: number;
  /** No new attempt after this long since the first (default: no limit but maxAttempts). */
  giveUpAfterMs?: number;
  /** Registers the call while it runs, so a caller can name what is still pending. */
  inFlight?: Map<string, InFlight>;
  /** Told of every error answer (retried or not), e.g. to count them by code. */
  onError?: (req: TransferRequest, err: ConnectError) => void;
}

/**
 * One Transfer, retried with the same request_id on the retryable codes only; any other code (e.g.
 * FailedPrecondition: insufficient funds) is thrown as the ConnectError it is. A transfer that gets no
 * definite answer within the attempts throws a plain Error that says so.
 */
export async function transferWithRetries(req: TransferRequest, opts: RetryOptions): Promise<TransferResponse> {
  const { callTimeoutMs = 10_000, maxAttempts = 200, giveUpAfterMs = Infinity } = opts;
  const entry: InFlight = { request: req, startedAt: Date.now(), attempts: 0, codes: [] };
  // A late duplicate (a replay check) runs under the same id: key the registry by a unique token.
  const token = `${req.requestId}#${Math.random().toString(36).slice(2)}`;
  opts.inFlight?.set(token, entry);
  try {
    for (let backoffMs = 20; ; backoffMs = Math.min(backoffMs * 2, 250)) {
      entry.attempts++;
      try {
        return await opts.client().transfer({ fromKey: req.from, toKey: req.to, amount: req.amount, requestId: req.requestId }, { timeoutMs: callTimeoutMs });
      } catch (err) {
        const e = ConnectError.from(err);
        entry.lastError = `${Code[e.code]}: ${e.rawMessage}`;
        entry.codes.push(e.code);
        opts.onError?.(req, e);
        if (!retryableCodes.has(e.code) && !noAnswer(e)) throw e;
        if (entry.attempts >= maxAttempts || Date.now() - entry.startedAt >= giveUpAfterMs) {
          throw new Error(`transfer ${req.requestId}: no definite answer after ${entry.attempts} attempts in ${Date.now() - entry.startedAt} ms; last: ${entry.lastError}`);
        }
        // A back-off, not synchronisation: the router may be restarting or a shard down; the next
        // attempt (same id) finds out. Bounded, so a restart is noticed within 250 ms.
        await new Promise((r) => setTimeout(r, backoffMs));
      }
    }
  } finally {
    opts.inFlight?.delete(token);
  }
}

/**
 * The call never reached an answer: the client's socket failed under it (the router was SIGKILLed
 * while the request was being written). connect-node reports a write EPIPE as Internal, though no
 * router said anything; like unavailable, it is retried with the same request_id.
 */
function noAnswer(err: ConnectError): boolean {
  const socketCodes = new Set(["EPIPE", "ECONNRESET", "ECONNREFUSED", "ERR_STREAM_DESTROYED", "ERR_HTTP2_INVALID_STREAM", "ERR_HTTP2_STREAM_CANCEL"]);
  for (let cause: unknown = err.cause, depth = 0; cause && depth < 5; cause = (cause as { cause?: unknown }).cause, depth++) {
    if (socketCodes.has(String((cause as { code?: unknown }).code))) return true;
  }
  return false;
}

/** What the router answered, transfer by transfer. */
export class BankLedger {
  readonly acknowledged: Acknowledged[] = [];
  rejected = 0;
  attempted = 0;
  replaysChecked = 0;
  /** Transfers that ended with neither an acknowledgement nor a rejection: each one is a failure. */
  readonly errors: string[] = [];
  /** Late duplicates not answered as a replay of the first answer. */
  readonly replayErrors: string[] = [];

  /**
   * Runs one transfer to a definite answer and records it. With `replay`, an acknowledged one is sent
   * again under its id: the router must answer it as a replay of the same transaction.
   */
  async transfer(req: TransferRequest, opts: RetryOptions & { replay?: boolean }): Promise<void> {
    this.attempted++;
    let res: TransferResponse;
    try {
      res = await transferWithRetries(req, opts);
    } catch (err) {
      if (err instanceof ConnectError && err.code === Code.FailedPrecondition) this.rejected++;
      else this.errors.push(describeError(req, err));
      return;
    }
    this.acknowledged.push({ ...req, transactionId: res.transactionId });
    if (!opts.replay) return;
    this.replaysChecked++;
    try {
      const again = await transferWithRetries(req, opts);
      if (!again.replayed || again.transactionId !== res.transactionId) {
        this.replayErrors.push(`replay of ${req.requestId}: replayed=${again.replayed}, transaction ${again.transactionId} (first answer: ${res.transactionId})`);
      }
    } catch (err) {
      this.replayErrors.push(`replay of ${req.requestId}: ${describeError(req, err)}`);
    }
  }
}

function describeError(req: TransferRequest, err: unknown): string {
  return err instanceof ConnectError ? `transfer ${req.requestId}: unexpected ${Code[err.code]}: ${err.rawMessage}` : String((err as Error)?.message ?? err);
}

/** A random transfer between two distinct accounts acct-0 … acct-(accounts-1), sometimes more than a balance. */
export function randomTransfer(random: (n: number) => number, accounts: number, requestId: string): TransferRequest {
  const from = `acct-${random(accounts)}`;
  let to = `acct-${random(accounts)}`;
  if (to === from) to = `acct-${(Number(from.slice(5)) + 1) % accounts}`;
  return { from, to, amount: BigInt(1 + random(1200)), requestId };
}

export interface BankState { balances: Map<string, bigint>; requestRecords: number }

/** Every balance and the number of request records, read straight from each shard's writable node. */
export async function readBank(shards: postgres.Sql[]): Promise<BankState> {
  const balances = new Map<string, bigint>();
  let requestRecords = 0;
  for (const sql of shards) {
    for (const r of await sql`select id, balance::text as balance from accounts`) balances.set(r.id, BigInt(r.balance));
    const [{ n }] = await sql`select count(*)::int as n from shardrouter.requests`;
    requestRecords += n;
  }
  return { balances, requestRecords };
}

export interface Invariant { name: string; problems: string[] }

/**
 * The bank's invariants, each with what violates it (no problems: it holds): money is conserved,
 * nothing is negative, every balance equals what the acknowledged transfers imply and there is one
 * request record per acknowledged transfer (each applied exactly once), every transfer got a definite
 * answer, and a late duplicate was answered as a replay of the same transaction.
 */
export function bankInvariants(state: BankState, ledger: BankLedger, bank: { accounts: number; startingBalance: bigint }): Invariant[] {
  const total = [...state.balances.values()].reduce((s, b) => s + b, 0n);
  const want = BigInt(bank.accounts) * bank.startingBalance;
  const negative = [...state.balances].filter(([, b]) => b < 0n);
  const expected = new Map<string, bigint>();
  for (let i = 0; i < bank.accounts; i++) expected.set(`acct-${i}`, bank.startingBalance);
  for (const a of ledger.acknowledged) {
    expected.set(a.from, expected.get(a.from)! - a.amount);
    expected.set(a.to, expected.get(a.to)! + a.amount);
  }
  const wrong = [...expected].filter(([k, v]) => state.balances.get(k) !== v);
  const settled = ledger.acknowledged.length + ledger.rejected + ledger.errors.length;
  const first = (list: string[], n = 10) => (list.length > n ? [...list.slice(0, n), `… and ${list.length - n} more`] : list);
  return [
    { name: "total conserved", problems: total === want ? [] : [`total ${total}, expected ${want}`] },
    { name: "no negative balance", problems: negative.length ? [`negative: ${negative.slice(0, 5).map(([k, b]) => `${k}=${b}`).join(", ")}`] : [] },
    {
      name: "every acknowledged transfer applied exactly once",
      problems: [
        ...(wrong.length ? [`${wrong.length} balance(s) differ from what the acknowledged transfers imply, e.g. ` +
          wrong.slice(0, 5).map(([k, v]) => `${k}: ${state.balances.get(k) ?? "missing"} (expected ${v})`).join(", ")] : []),
        ...(state.requestRecords !== ledger.acknowledged.length ? [`${state.requestRecords} request records for ${ledger.acknowledged.length} acknowledged transfers`] : []),
      ],
    },
    {
      name: "every transfer got a definite answer",
      problems: [
        ...(settled !== ledger.attempted ? [`${ledger.attempted} attempted, ${settled} settled`] : []),
        ...first(ledger.errors),
      ],
    },
    { name: "a late duplicate is a replay", problems: first(ledger.replayErrors) },
  ];
}

/** Every violation of bankInvariants, as one flat list (empty: all hold). */
export function bankViolations(state: BankState, ledger: BankLedger, bank: { accounts: number; startingBalance: bigint }): string[] {
  return bankInvariants(state, ledger, bank).flatMap((i) => i.problems.map((p) => `${i.name}: ${p}`));
}

/** Prepared transactions left on the shards, as "shard: gid" (empty when none). */
export async function preparedTransactions(shards: { name: string; sql: postgres.Sql }[]): Promise<string[]> {
  const left: string[] = [];
  for (const { name, sql } of shards) {
    for (const r of await sql`select gid from pg_prepared_xacts order by gid`) left.push(`${name}: ${r.gid}`);
  }
  return left;
}
