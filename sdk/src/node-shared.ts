// What the SDK's two lean Node transports (node-grpc-transport.ts, node-connect-transport.ts) share:
// connect-node's mapping of Node errors, header conversion, the user agent and the interceptor chain.
import {
  Code, ConnectError, type ContextValues, type Interceptor, type Transport, type UnaryRequest, type UnaryResponse, createContextValues,
} from "@connectrpc/connect";
import { type DescMessage, type DescMethodUnary, type MessageShape, create, toBinary } from "@bufbuild/protobuf";
import { getAbortSignalReason } from "@connectrpc/connect/protocol";

/** What connect-node sends, so the server sees the same client. */
export const userAgent = "connect-es/2.1.2";

/** Stands in for "no signal" in a UnaryRequest (its signal is not optional). */
export const neverAborted: AbortSignal = new AbortController().signal;

type NodeHeaders = NodeJS.Dict<number | string | string[]>;

/** Appends fetch-style headers (Headers, tuples or a record) to Node's outgoing headers, keys lower-cased. */
export function toNodeHeaders(target: NodeHeaders, init: HeadersInit): void {
  const add = (value: string, key: string) => {
    const k = key.toLowerCase();
    const existing = target[k];
    target[k] = existing === undefined ? value : Array.isArray(existing) ? [...existing, value] : [String(existing), value];
  };
  if (init instanceof Headers) init.forEach(add);
  else if (Array.isArray(init)) for (const [k, v] of init) add(v, k);
  else for (const k of Object.keys(init)) add((init as Record<string, string>)[k], k);
}

/** Node's incoming headers as fetch Headers (HTTP/2 pseudo-headers left out), as connect-node converts them. */
export function webHeaders(h: NodeJS.Dict<string | string[] | number> | undefined): Headers {
  const out = new Headers();
  if (h === undefined) return out;
  for (const k of Object.keys(h)) {
    if (k.charCodeAt(0) === 58 /* ":" */) continue;
    const v = h[k];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const e of v) out.append(k, e);
    else out.append(k, String(v));
  }
  return out;
}

// connect-node's mapping of Node errors (node-error.js, not exported by the package), so an
// unreachable server is Unavailable with the same message as with connect-node. Two additions: a
// write to a connection the server closed (EPIPE) and a TLS handshake that failed (a certificate not
// trusted, expired, or for another name) are Unavailable too, as gRPC's core reports them, not Internal.
const tlsFailure = /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$|HOSTNAME_MISMATCH$)/;
export function connectErrorFromNodeReason(reason: unknown): ConnectError {
  // A stream queued on a session that failed to connect: the cause is the connection's error.
  if (reason instanceof Error && (reason as { code?: string }).code === "ERR_HTTP2_STREAM_CANCEL" && reason.cause instanceof Error) reason = reason.cause;
  const codes: string[] = [];
  for (let e: unknown = reason; e instanceof Error && codes.length < 16; e = e.cause) {
    const c = (e as { code?: unknown }).code;
    if (typeof c === "string") codes.push(c);
    if (!("cause" in e)) break;
  }
  let code = Code.Internal;
  if (codes.includes("ERR_STREAM_WRITE_AFTER_END")) code = Code.Aborted;
  else if (codes.some((c) => c === "ERR_STREAM_DESTROYED" || c === "ERR_HTTP2_INVALID_STREAM" || c === "ECONNRESET")) code = Code.Aborted;
  else if (codes.some((c) => c === "ETIMEDOUT" || c === "ENOTFOUND" || c === "EAI_AGAIN" || c === "ECONNREFUSED" || c === "EPIPE" || tlsFailure.test(c))) code = Code.Unavailable;
  const ce = ConnectError.from(reason, code);
  if (ce !== reason) ce.cause = reason;
  return ce;
}

/** The one unary call of a transport, once interceptors have had their say. */
export type UnaryCallFn = <I extends DescMessage, O extends DescMessage>(
  method: DescMethodUnary<I, O>, signal: AbortSignal | undefined, header: HeadersInit | undefined, message: MessageShape<I>,
) => Promise<UnaryResponse<I, O>>;

/**
 * Runs `call` behind the interceptors, as connect-es' runUnaryCall does, but without its per-call
 * AbortController: req.signal is the caller's signal; the deadline is the transport's own timer.
 */
export function interceptedUnary<I extends DescMessage, O extends DescMessage>(
  interceptors: Interceptor[], call: UnaryCallFn, method: DescMethodUnary<I, O>, url: string, signal: AbortSignal | undefined,
  header: HeadersInit | undefined, message: MessageShape<I>, contextValues: ContextValues | undefined,
): Promise<UnaryResponse<I, O>> {
  type AnyFn = Parameters<Interceptor>[0];
  let next: AnyFn = (req) => {
    const r = req as UnaryRequest<I, O>;
    return call(r.method, r.signal === neverAborted ? undefined : r.signal, r.header, r.message);
  };
  for (let i = interceptors.length - 1; i >= 0; i--) next = interceptors[i](next);
  return next({
    stream: false, service: method.parent, method, requestMethod: "POST", url,
    header: new Headers(header), contextValues: contextValues ?? createContextValues(), message, signal: signal ?? neverAborted,
  } satisfies UnaryRequest<I, O>).then(undefined, (err) => Promise.reject(ConnectError.from(err))) as Promise<UnaryResponse<I, O>>; // as runUnaryCall: an interceptor's plain Error becomes a ConnectError
}

/** Sends one encoded unary request to `path` (the transport's own wire); `timeoutMs` undefined means none. */
export type SendFn = <I extends DescMessage, O extends DescMessage>(
  path: string, method: DescMethodUnary<I, O>, signal: AbortSignal | undefined, timeoutMs: number | undefined,
  header: HeadersInit | undefined, body: Uint8Array,
) => Promise<UnaryResponse<I, O>>;

/** Refuses a call already cancelled or past its deadline, encodes the message, then sends it. */
function encodeAndSend<I extends DescMessage, O extends DescMessage>(
  send: SendFn, path: string, method: DescMethodUnary<I, O>, signal: AbortSignal | undefined, timeoutMs: number | undefined,
  header: HeadersInit | undefined, message: MessageShape<I>,
): Promise<UnaryResponse<I, O>> {
  if (signal?.aborted) return Promise.reject(ConnectError.from(getAbortSignalReason(signal), Code.Canceled));
  if (timeoutMs !== undefined && timeoutMs <= 0) return Promise.reject(new ConnectError("the operation timed out", Code.DeadlineExceeded));
  let body: Uint8Array;
  try {
    body = toBinary(method.input, message);
  } catch (err) {
    return Promise.reject(new ConnectError(`serialize binary: ${err instanceof Error ? err.message : String(err)}`, Code.Internal));
  }
  return send(path, method, signal, timeoutMs, header, body);
}

/**
 * Transport.unary for both lean transports: the deadline default, the request message, then `send`,
 * straight or behind the interceptors. Paths are computed once per method.
 */
export function leanUnary(baseUrl: URL, interceptors: Interceptor[], defaultTimeoutMs: number | undefined, send: SendFn): Transport["unary"] {
  const prefix = baseUrl.pathname.replace(/\/+$/, "");
  const paths = new Map<object, string>();
  const pathOf = (method: DescMethodUnary) => {
    let p = paths.get(method);
    if (p === undefined) paths.set(method, (p = `${prefix}/${method.parent.typeName}/${method.name}`));
    return p;
  };
  return <I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>, signal: AbortSignal | undefined, timeoutMs: number | undefined,
    header: HeadersInit | undefined, input: MessageShape<I> | object, contextValues?: ContextValues,
  ): Promise<UnaryResponse<I, O>> => {
    // As connect-es: undefined means the default, ≤ 0 means none.
    const timeout = timeoutMs === undefined ? defaultTimeoutMs : timeoutMs <= 0 ? undefined : timeoutMs;
    let message: MessageShape<I>;
    try {
      message = create(method.input, input as MessageShape<I>);
    } catch (err) {
      return Promise.reject(ConnectError.from(err, Code.Internal));
    }
    if (interceptors.length === 0) return encodeAndSend(send, pathOf(method), method, signal, timeout, header, message);
    const call: UnaryCallFn = (m, sig, h, msg) => encodeAndSend(send, pathOf(m), m, sig, timeout, h, msg);
    return interceptedUnary(interceptors, call, method, `${baseUrl.origin}${pathOf(method)}`, signal, header, message, contextValues);
  };
}
