// One Connect interceptor for every RPC: the request counted and timed by method, shard and code;
// failures logged with the request id (see request-id.ts), and every request when the level is info
// (access log).
//
// The shard is read from what the request produced, never recomputed: a response's `shard`, a
// Transfer's two equal shards, a transaction's single shard; for a failure, the Postgres error
// detail's shard or the node of a NodeUnreachableError. Anything else is "" (none or several).
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { DescMethod } from "@bufbuild/protobuf";
import { PostgresErrorDetailSchema } from "../../gen/shardrouter/v1/errors_pb.js";
import { NodeUnreachableError } from "../shards/node-unreachable.js";
import type { ShardSet } from "../shards/shard-set.js";
import { codeNames, type Logger } from "./logger.js";
import { requestIdKey } from "./request-id.js";
import type { RpcStats } from "./rpc-stats.js";

export interface RpcObserverDeps {
  stats: RpcStats;
  logger: Logger;
  shards: ShardSet;
  /** An id for a request that came without one (not through RequestIds.wrap). */
  newRequestId: () => string;
}

/** What the unary fast path (rpc/unary-handler.ts) reports, as the interceptor does for Connect. */
export interface RpcObserver {
  /** The Connect interceptor: observes every RPC that goes through connect-node. */
  readonly interceptor: Interceptor;
  succeeded(method: DescMethod, requestId: string, started: number, message: unknown): void;
  failed(method: DescMethod, requestId: string, started: number, err: unknown): void;
}

export function observeRpcs({ stats, logger, shards, newRequestId }: RpcObserverDeps): RpcObserver {
  // Shards the router has nodes for, registered ones too (AddShard): a bounded set of label values.
  const known = (name: unknown): string => (typeof name === "string" && shards.has(name) ? name : "");
  const shardOfNode = (node: string) => shards.shards.find((s) => s.nodes.some((n) => n.name === node))?.name ?? "";
  // Which levels log, refreshed when the level changes, not asked on every request.
  const enabled = { error: false, warn: false, info: false };
  const levelChanged = () => { for (const l of ["error", "warn", "info"] as const) enabled[l] = logger.isLevelEnabled(l); };
  levelChanged();
  logger.on("level-change", levelChanged);

  const shardOfMessage = (message: unknown): string => {
    const m = message as { shard?: unknown; fromShard?: unknown; toShard?: unknown; shards?: unknown };
    if (m.shard !== undefined) return known(m.shard);
    if (m.fromShard !== undefined) return m.fromShard === m.toShard ? known(m.fromShard) : "";
    if (Array.isArray(m.shards) && m.shards.length === 1) return known(m.shards[0]);
    return "";
  };
  const shardOfError = (err: ConnectError): string => {
    if (err instanceof NodeUnreachableError) return shardOfNode(err.node);
    return err.details.length ? known(err.findDetails(PostgresErrorDetailSchema)[0]?.shard) : "";
  };

  const finish = (method: DescMethod, requestId: string, started: number, code: number, shard: string, err: unknown) => {
    const seconds = (performance.now() - started) / 1000;
    stats.record(method, shard, code, seconds);
    const level = levelFor(code);
    if (!enabled[level]) return;
    const line = {
      requestId, service: method.parent.typeName, rpc: method.name, ...(shard ? { shard } : {}),
      code: codeNames[code], ms: Math.round(seconds * 1e6) / 1e3, ...(err !== undefined ? { err } : {}),
    };
    logger[level](line, code === Code.Internal || code === Code.Unknown ? "rpc failed" : "rpc");
  };

  const succeeded = (method: DescMethod, requestId: string, started: number, message: unknown) =>
    finish(method, requestId, started, 0, shardOfMessage(message), undefined);
  const failed = (method: DescMethod, requestId: string, started: number, e: unknown) => {
    // connect-node answers any non-Connect error with "internal error" (every protocol).
    if (e instanceof ConnectError) finish(method, requestId, started, e.code, shardOfError(e), e);
    else finish(method, requestId, started, Code.Internal, "", e);
  };

  const interceptor: Interceptor = (next) => async (req) => {
    const started = performance.now();
    const requestId = req.contextValues.get(requestIdKey) || newRequestId();
    let res;
    try {
      res = await next(req);
    } catch (e) {
      failed(req.method, requestId, started, e);
      throw e;
    }
    if (res.stream) {
      return { ...res, message: observeStream(res.message, (code, err) => finish(req.method, requestId, started, code, "", err)) };
    }
    succeeded(req.method, requestId, started, res.message);
    return res;
  };
  return { interceptor, succeeded, failed };
}

/** Server faults are errors; overload, unavailability and deadlines warnings; callers' mistakes info. */
function levelFor(code: number): "error" | "warn" | "info" {
  switch (code) {
    case Code.Internal: case Code.Unknown: case Code.DataLoss: case Code.Unimplemented:
      return "error";
    case Code.Unavailable: case Code.DeadlineExceeded: case Code.ResourceExhausted:
      return "warn";
    default:
      return "info";
  }
}

/** A server stream, counted when it ends: ok, its error's code, or canceled when the caller left. */
async function* observeStream<T>(messages: AsyncIterable<T>, done: (code: number, err: unknown) => void): AsyncIterable<T> {
  let code: number = Code.Canceled;
  let error: unknown;
  try {
    yield* messages;
    code = 0;
  } catch (e) {
    code = e instanceof ConnectError ? e.code : Code.Internal;
    error = e;
    throw e;
  } finally {
    done(code, error);
  }
}
