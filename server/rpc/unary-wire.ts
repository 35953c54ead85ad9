// The two wire formats the unary fast path (unary-handler.ts) speaks, binary protobuf only:
// gRPC (HTTP/2: one enveloped message, status in trailers) and Connect unary (HTTP/1.1 or HTTP/2: the
// bare message, errors as JSON with an HTTP status). The encodings of errors, timeouts and status
// come from @connectrpc/connect's protocol modules, so answers match what connect-node sends.
import type { IncomingHttpHeaders } from "node:http";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus, errorToJsonBytes, parseTimeout as parseConnectTimeout } from "@connectrpc/connect/protocol-connect";
import { parseTimeout as parseGrpcTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";

/** What to send back: status, headers, body and (gRPC) trailers; the transport writes it. */
export interface Answer {
  status: number;
  headers: Record<string, string | number>;
  body?: Uint8Array;
  trailers?: Record<string, string>;
}

export interface UnaryWire {
  /** The deadline the caller asked for (ms), undefined for none; throws InvalidArgument when unreadable. */
  timeoutMs(headers: IncomingHttpHeaders): number | undefined;
  /** The request message inside the body. */
  unwrap(body: Buffer): Uint8Array;
  answer(message: Uint8Array): Answer;
  fail(err: ConnectError): Answer;
}

/** The wire a request speaks, if it is one the fast path serves (uncompressed binary protobuf). */
export function wireOf(headers: IncomingHttpHeaders, http2: boolean): UnaryWire | undefined {
  const type = headers["content-type"];
  if (type === "application/proto") return identity(headers["content-encoding"]) ? connectWire : undefined;
  if ((type === "application/grpc" || type === "application/grpc+proto") && http2) {
    return identity(headers["grpc-encoding"]) ? grpcWire : undefined;
  }
  return undefined;
}

const identity = (encoding: string | string[] | undefined) => encoding === undefined || encoding === "identity";

/** Like connect-node: no upper bound of its own (setTimeout's limit is handled by the caller). */
const maxTimeoutMs = Number.MAX_SAFE_INTEGER;

function timeoutOf(parsed: { timeoutMs?: number; error?: ConnectError }): number | undefined {
  if (parsed.error) throw parsed.error;
  return parsed.timeoutMs;
}

const headerValue = (v: string | string[] | undefined): string | null => (typeof v === "string" ? v : null);

const grpcHeaders: Record<string, string> = { "content-type": "application/grpc+proto" };
const grpcOk: Record<string, string> = { "grpc-status": "0" };

const grpcWire: UnaryWire = {
  timeoutMs: (headers) => timeoutOf(parseGrpcTimeout(headerValue(headers["grpc-timeout"]), maxTimeoutMs)),
  unwrap(body) {
    if (body.length < 5) {
      throw new ConnectError(body.length === 0 ? "protocol error: missing input message for unary method" : "protocol error: incomplete envelope", Code.InvalidArgument);
    }
    if (body[0] & 1) throw new ConnectError("protocol error: received compressed message without grpc-encoding", Code.InvalidArgument);
    const length = body.readUInt32BE(1);
    if (5 + length < body.length) throw new ConnectError("protocol error: received extra input message for unary method", Code.InvalidArgument);
    if (5 + length > body.length) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
    return body.subarray(5);
  },
  answer(message) {
    const frame = Buffer.allocUnsafe(5 + message.length);
    frame[0] = 0;
    frame.writeUInt32BE(message.length, 1);
    frame.set(message, 5);
    return { status: 200, headers: grpcHeaders, body: frame, trailers: grpcOk };
  },
  fail(err) {
    const trailers: Record<string, string> = {};
    setTrailerStatus(new Headers(), err).forEach((value, key) => { trailers[key] = value; });
    return { status: 200, headers: grpcHeaders, trailers };
  },
};

const connectWire: UnaryWire = {
  timeoutMs: (headers) => timeoutOf(parseConnectTimeout(headerValue(headers["connect-timeout-ms"]), maxTimeoutMs)),
  unwrap: (body) => body,
  answer(message) {
    return { status: 200, headers: { "content-type": "application/proto", "content-length": message.length }, body: message };
  },
  fail(err) {
    const body = errorToJsonBytes(err, {});
    const headers: Record<string, string | number> = {};
    err.metadata.forEach((value, key) => { headers[key] = value; });
    headers["content-type"] = "application/json";
    headers["content-length"] = body.length;
    return { status: codeToHttpStatus(err.code), headers, body };
  },
};
