// A read goes to the first candidate node; when that node does not answer (refused, lost, breaker
// open) it is retried on the next one the read preference allows. Writes get a single candidate (the
// writer), so they are never retried blindly. Postgres errors are answers: never retried.
import { NodeUnreachableError } from "../shards/node-unreachable.js";
import type { NodePool } from "../shards/node-pool.js";

export async function onFirstAnswering<T>(candidates: NodePool[], signal: AbortSignal, run: (node: NodePool) => Promise<T>): Promise<T> {
  let lastError: unknown;
  for (const node of candidates) {
    try {
      return await run(node);
    } catch (err) {
      if (!(err instanceof NodeUnreachableError) || signal.aborted) throw err;
      lastError = err;
    }
  }
  throw lastError;
}
