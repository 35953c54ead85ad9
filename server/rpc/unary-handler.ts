// The hot path: a unary call in binary protobuf (gRPC over HTTP/2, Connect over HTTP/1.1 or HTTP/2)
// is answered here, straight on node:http / node:http2, by the same handlers connect-node calls.
// connect-node's generic machinery (async-iterable pipelines, fetch Headers, and two AbortControllers
// whose abort() builds a DOMException with a stack on every request) was most of the router's CPU
// per point select (docs/performance.md). Everything else (JSON, compression, GET, streams, health,
// reflection, gRPC-Web) goes to connect-node; this answers like it does: codes, messages, details.
import type { EventEmitter } from "node:events";
import type * as http from "node:http";
import type * as http2 from "node:http2";
import type { Readable } from "node:stream";
import { type DescMethod, type DescService, create, fromBinary, isMessage, type Message, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Admitted, Authenticator } from "../auth/authenticator.js";
import type { RpcObserver } from "../observability/interceptor.js";
import { requestIdHeader } from "../observability/request-id.js";
import type { CallContext } from "./router-service.js";
import { unknownFieldsError } from "./strict-fields.js";
import { type Answer, type UnaryWire, wireOf } from "./unary-wire.js";

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;
type NodeHandler = (req: NodeRequest, res: NodeResponse) => void;
type Impl = (req: never, ctx: CallContext) => unknown;

export interface UnaryHandlerOptions {
  service: DescService;
  /** The service's handlers by method local name (routerService's result). */
  handlers: Record<string, Impl>;
  observer: Pick<RpcObserver, "succeeded" | "failed">;
  /** The request id of an HTTP/1.1 request (given to it in front of this handler). */
  requestIdOf(req: NodeRequest): string;
  /** The request id for a raw HTTP/2 stream's headers. */
  requestIdFrom(headers: http.IncomingHttpHeaders): string;
  readMaxBytes: number;
  /** Serves every HTTP/1.1 request this does not: connect-node's adapter. */
  fallback: NodeHandler;
  /** Lets a call in or refuses it (auth); without it, every call is let in as the router (--insecure). */
  admit?: Authenticator["admit"];
}

export interface UnaryHandler {
  /** An HTTP/1.1 request: served here, or passed to the fallback. */
  http1: NodeHandler;
  /** A raw HTTP/2 stream: true when served here; false leaves it to the caller (connect-node). */
  http2(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean;
}

interface Route {
  method: DescMethod;
  impl: (req: Message, ctx: CallContext) => unknown;
}

/** One call, whichever HTTP version carried it. */
interface Exchange {
  headers: http.IncomingHttpHeaders;
  /** The request body: the IncomingMessage, or the HTTP/2 stream itself. */
  body: Readable;
  /** Emits "close" when the exchange ends (answered, or the caller went away). */
  closing: EventEmitter;
  requestId: string;
  /** The connection's socket (a TLSSocket under TLS: client certificates). */
  socket: unknown;
  /** False once the caller is gone. */
  writable(): boolean;
  send(answer: Answer): void;
}

/** setTimeout fires at once for anything longer than this; a longer deadline is no deadline. */
const maxTimerMs = 2 ** 31 - 1;
/** The reason a finished call's signal is aborted with: built once, not per call (see top). */
const callEnded = new ConnectError("the call has ended", Code.Canceled);

export function unaryHandler(opts: UnaryHandlerOptions): UnaryHandler {
  const routes = new Map<string, Route>();
  for (const method of opts.service.methods) {
    const impl = opts.handlers[method.localName];
    if (method.methodKind === "unary" && impl) routes.set(`/${opts.service.typeName}/${method.name}`, { method, impl: impl as Route["impl"] });
  }
  return {
    http1(req, res) {
      const route = req.method === "POST" ? routes.get(req.url ?? "") : undefined;
      const wire = route && wireOf(req.headers, req.httpVersionMajor === 2);
      if (!route || !wire) return opts.fallback(req, res);
      serve(route, wire, {
        headers: req.headers, body: req, closing: res, requestId: opts.requestIdOf(req), socket: req.socket,
        writable: () => !res.destroyed,
        send(a) {
          (res as http.ServerResponse).writeHead(a.status, a.headers);
          if (a.body) res.end(a.body);
          else res.end();
        },
      }, opts);
    },
    http2(stream, headers) {
      const route = headers[":method"] === "POST" ? routes.get(headers[":path"] ?? "") : undefined;
      const wire = route && wireOf(headers, true);
      if (!route || !wire) return false;
      stream.on("error", () => {}); // a reset by the caller; "close" handles it
      const requestId = opts.requestIdFrom(headers);
      serve(route, wire, {
        headers, body: stream, closing: stream, requestId, socket: stream.session?.socket,
        writable: () => !stream.destroyed && !stream.closed,
        send(a) {
          stream.respond({ ":status": a.status, [requestIdHeader]: requestId, ...a.headers }, { waitForTrailers: a.trailers !== undefined });
          if (a.trailers) stream.once("wantTrailers", () => stream.sendTrailers(a.trailers!));
          stream.end(a.body);
        },
      }, opts);
      return true;
    },
  };
}

function serve(route: Route, wire: UnaryWire, x: Exchange, opts: UnaryHandlerOptions): void {
  const started = performance.now();
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let done = false;
  let admitted: Admitted | undefined;
  // The caller went away (connection closed, stream reset): cancel its statement.
  x.closing.once("close", () => {
    if (!done) controller.abort(new ConnectError("the caller cancelled the request", Code.Canceled));
  });
  const finish = () => {
    done = true;
    admitted?.release();
    clearTimeout(timer);
    controller.abort(callEnded); // anything still listening (a straggling shard) stops
  };
  const fail = (e: unknown) => {
    finish();
    opts.observer.failed(route.method, x.requestId, started, e);
    if (x.writable()) x.send(wire.fail(e instanceof ConnectError ? e : new ConnectError("internal error", Code.Internal, undefined, undefined, e)));
  };
  try {
    const timeoutMs = wire.timeoutMs(x.headers);
    if (timeoutMs !== undefined && timeoutMs <= maxTimerMs) {
      timer = setTimeout(() => controller.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded)), timeoutMs);
    }
  } catch (e) {
    return fail(e);
  }
  // The body is read at once (its listeners must be on the stream before it ends), but nothing of it
  // is decoded or run before the caller is let in: an unidentified one gets nothing but the refusal.
  // A body that fails while the caller is still being checked (it left) must not be an unhandled
  // rejection, which would end the process: it is awaited below or, after a refusal, dropped here.
  const body = readBody(x.body, opts.readMaxBytes);
  body.catch(() => {});
  (async () => {
    if (opts.admit) admitted = await opts.admit(route.method, x.headers.authorization, x.socket);
    const input = decode(route.method, wire.unwrap(await body));
    const output = await route.impl(input, { signal: controller.signal, caller: admitted?.caller });
    const schema = route.method.output;
    const message = isMessage(output, schema) ? output : create(schema, output as never);
    const bytes = toBinary(schema, message);
    finish();
    opts.observer.succeeded(route.method, x.requestId, started, message);
    if (x.writable()) x.send(wire.answer(bytes));
  })().catch(fail);
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
function readBody(req: Readable, maxBytes: number): Promise<Buffer> {
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
