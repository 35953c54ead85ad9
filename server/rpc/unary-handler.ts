// The hot path: a unary call in binary protobuf (gRPC over HTTP/2, Connect over HTTP/1.1 or HTTP/2)
// is answered here, straight on node:http / node:http2, by the same handlers connect-node calls.
// connect-node's generic machinery (async-iterable pipelines, fetch Headers, and two AbortControllers
// whose abort() builds a DOMException with a stack on every request) was most of the router's CPU
// per point select (README, Performance). Everything else (JSON, compression, GET, streams, health,
// reflection, gRPC-Web) goes to connect-node; this answers like it does: codes, messages, details.
import { type DescMethod, type DescService, create, fromBinary, isMessage, type Message, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { RpcObserver } from "../observability/interceptor.js";
import type { CallContext } from "./router-service.js";
import { unknownFieldsError } from "./strict-fields.js";
import { type NodeRequest, type NodeResponse, type UnaryWire, wireOf } from "./unary-wire.js";

type NodeHandler = (req: NodeRequest, res: NodeResponse) => void;
type Impl = (req: never, ctx: CallContext) => unknown;

export interface UnaryHandlerOptions {
  service: DescService;
  /** The service's handlers by method local name (routerService's result). */
  handlers: Record<string, Impl>;
  observer: Pick<RpcObserver, "succeeded" | "failed">;
  requestIdOf(req: NodeRequest): string;
  readMaxBytes: number;
  /** Serves every request this does not: connect-node's adapter. */
  fallback: NodeHandler;
}

interface Route {
  method: DescMethod;
  impl: (req: Message, ctx: CallContext) => unknown;
}

/** setTimeout fires at once for anything longer than this; a longer deadline is no deadline. */
const maxTimerMs = 2 ** 31 - 1;
/** The reason a finished call's signal is aborted with: built once, not per call (see top). */
const callEnded = new ConnectError("the call has ended", Code.Canceled);

export function unaryHandler(opts: UnaryHandlerOptions): NodeHandler {
  const routes = new Map<string, Route>();
  for (const method of opts.service.methods) {
    const impl = opts.handlers[method.localName];
    if (method.methodKind === "unary" && impl) routes.set(`/${opts.service.typeName}/${method.name}`, { method, impl: impl as Route["impl"] });
  }
  return (req, res) => {
    const route = req.method === "POST" ? routes.get(req.url ?? "") : undefined;
    const wire = route && wireOf(req);
    if (!route || !wire) return opts.fallback(req, res);
    serve(route, wire, req, res, opts);
  };
}

function serve(route: Route, wire: UnaryWire, req: NodeRequest, res: NodeResponse, opts: UnaryHandlerOptions): void {
  const started = performance.now();
  const requestId = opts.requestIdOf(req);
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let done = false;
  // The caller went away (connection closed, stream reset): cancel its statement.
  res.once("close", () => {
    if (!done) controller.abort(new ConnectError("the caller cancelled the request", Code.Canceled));
  });
  const finish = () => {
    done = true;
    clearTimeout(timer);
    controller.abort(callEnded); // anything still listening (a straggling shard) stops
  };
  const fail = (e: unknown) => {
    finish();
    opts.observer.failed(route.method, requestId, started, e);
    if (res.headersSent || res.destroyed) return;
    wire.fail(res, e instanceof ConnectError ? e : new ConnectError("internal error", Code.Internal, undefined, undefined, e));
  };
  try {
    const timeoutMs = wire.timeoutMs(req);
    if (timeoutMs !== undefined && timeoutMs <= maxTimerMs) {
      timer = setTimeout(() => controller.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded)), timeoutMs);
    }
  } catch (e) {
    return fail(e);
  }
  readBody(req, opts.readMaxBytes).then((body) => {
    const input = decode(route.method, wire.unwrap(body));
    return route.impl(input, { signal: controller.signal });
  }).then((output) => {
    const schema = route.method.output;
    const message = isMessage(output, schema) ? output : create(schema, output as never);
    const bytes = toBinary(schema, message);
    finish();
    opts.observer.succeeded(route.method, requestId, started, message);
    if (!res.destroyed) wire.answer(res, bytes);
  }).catch(fail);
}

function decode(method: DescMethod, bytes: Uint8Array): Message {
  let input: Message;
  try {
    input = fromBinary(method.input, bytes);
  } catch (e) {
    throw new ConnectError(`cannot decode ${method.input.typeName}: ${(e as Error).message}`, Code.InvalidArgument);
  }
  const unknown = unknownFieldsError(input);
  if (unknown) throw unknown;
  return input;
}

/** The whole body, refused past `maxBytes` (ResourceExhausted) and when the caller leaves mid-body. */
function readBody(req: NodeRequest, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let ended = false;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        if (!ended) reject(new ConnectError(`message size ${size} is larger than configured readMaxBytes ${maxBytes}`, Code.ResourceExhausted));
        ended = true;
        req.removeAllListeners("data");
        req.resume(); // drain the rest so the connection stays usable
        return;
      }
      chunks.push(chunk);
    });
    req.once("end", () => {
      if (ended) return;
      ended = true;
      resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    });
    req.once("error", (err) => {
      if (!ended) reject(new ConnectError(`reading the request failed: ${err.message}`, Code.Canceled));
      ended = true;
    });
    req.once("close", () => {
      if (!ended) reject(new ConnectError("the caller cancelled the request", Code.Canceled));
      ended = true;
    });
  });
}
