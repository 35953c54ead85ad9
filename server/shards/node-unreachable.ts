import { Code, ConnectError } from "@connectrpc/connect";

const brand = Symbol("NodeUnreachableError");

/**
 * The node did not answer (refused, lost, timed out): UNAVAILABLE for the caller, a failure for the
 * node's circuit breaker, and a reason to try another node for a read. Postgres errors are not.
 */
export class NodeUnreachableError extends ConnectError {
  readonly [brand] = true;

  constructor(message: string, readonly node: string) {
    super(message, Code.Unavailable);
  }

  // ConnectError's own hasInstance accepts any ConnectError (to work across copies of the module),
  // which a subclass inherits: without this, every Postgres error would count as a node failure.
  static override [Symbol.hasInstance](v: unknown): boolean {
    return typeof v === "object" && v !== null && (v as { [brand]?: boolean })[brand] === true;
  }
}
