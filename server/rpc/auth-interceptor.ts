// Auth for calls that go through connect-node (JSON, streams, GET, health, reflection): the same
// Authenticator.admit the unary fast path calls (unary-handler.ts), before any handler runs. The
// connection's socket (for a client certificate) comes in as a context value; the caller goes out as
// one, to the handlers (see withCaller).
import { type ContextValues, createContextKey, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import type { Admitted, Authenticator } from "../auth/authenticator.js";
import type { Caller } from "../auth/caller.js";
import type { CallContext } from "./router-service.js";

/** The request's socket (a TLSSocket under TLS), set by connectNodeAdapter's contextValues. */
export const peerKey = createContextKey<unknown>(undefined, { description: "peer socket" });
/** The authenticated caller, set by the interceptor. */
export const callerKey = createContextKey<Caller | undefined>(undefined, { description: "caller" });

export function authInterceptor(auth: Authenticator): Interceptor {
  return (next) => async (req) => {
    const admitted = await auth.admit(req.method, req.header.get("authorization") ?? undefined, req.contextValues.get(peerKey));
    if (!admitted) return next(req);
    req.contextValues.set(callerKey, admitted.caller);
    let res;
    try {
      res = await next(req);
    } catch (e) {
      admitted.release();
      throw e;
    }
    if (!res.stream) {
      admitted.release();
      return res;
    }
    // A stream's slot comes back when it ends, or when the call does (a generator never started
    // never runs its finally).
    req.signal.addEventListener("abort", () => admitted.release(), { once: true });
    return { ...res, message: releasedAtEnd(res.message, admitted) };
  };
}

async function* releasedAtEnd<T>(messages: AsyncIterable<T>, admitted: Admitted): AsyncIterable<T> {
  try {
    yield* messages;
  } finally {
    admitted.release();
  }
}

/** Handlers written against CallContext, served by connect-node: the caller comes from the context. */
export function withCaller<H extends Record<string, (req: never, ctx: CallContext) => unknown>>(handlers: H): H {
  const wrapped: Record<string, unknown> = {};
  for (const [name, handler] of Object.entries(handlers)) {
    wrapped[name] = (req: never, ctx: HandlerContext) => handler(req, { signal: ctx.signal, caller: ctx.values.get(callerKey) });
  }
  return wrapped as H;
}

/** Adds the socket to connect-node's per-request context values. */
export function withPeer<R extends { socket: unknown }>(values: (req: R) => ContextValues): (req: R) => ContextValues {
  return (req) => values(req).set(peerKey, req.socket);
}
