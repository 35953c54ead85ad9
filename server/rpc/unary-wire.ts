// The two wire formats the unary fast path (unary-handler.ts) speaks, binary protobuf only:
// gRPC (HTTP/2: one enveloped message, status in trailers) and Connect unary (HTTP/1.1 or HTTP/2: the
// bare message, errors as JSON with an HTTP status). The encodings of errors, timeouts and status
// come from @connectrpc/connect's protocol modules, so answers match what connect-node sends.
import type * as http from "node:http";
import type * as http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus, errorToJsonBytes, parseTimeout as parseConnectTimeout } from "@connectrpc/connect/protocol-connect";
import { parseTimeout as parseGrpcTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";

export type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

export interface UnaryWire {
  /** The deadline the caller asked for (ms), undefined for none; throws InvalidArgument when unreadable. */
  timeoutMs(req: NodeRequest): number | undefined;
  /** The request message inside the body. */
  unwrap(body: Buffer): Uint8Array;
  answer(res: NodeResponse, message: Uint8Array): void;
  fail(res: NodeResponse, err: ConnectError): void;
}

/** The wire a request speaks, if it is one the fast path serves (uncompressed binary protobuf). */
export function wireOf(req: NodeRequest): UnaryWire | undefined {
  const type = req.headers["content-type"];
  if (type === "application/proto") return identity(req.headers["content-encoding"]) ? connectWire : undefined;
  if ((type === "application/grpc" || type === "application/grpc+proto") && req.httpVersionMajor === 2) {
    return identity(req.headers["grpc-encoding"]) ? grpcWire : undefined;
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

const grpcHeaders = { "content-type": "application/grpc+proto" } as const;
const grpcOk = { "grpc-status": "0" } as const;

const grpcWire: UnaryWire = {
  timeoutMs: (req) => timeoutOf(parseGrpcTimeout(headerValue(req.headers["grpc-timeout"]), maxTimeoutMs)),
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
  answer(res, message) {
    const frame = Buffer.allocUnsafe(5 + message.length);
    frame[0] = 0;
    frame.writeUInt32BE(message.length, 1);
    frame.set(message, 5);
    (res as http2.Http2ServerResponse).writeHead(200, grpcHeaders);
    res.addTrailers(grpcOk);
    res.end(frame);
  },
  fail(res, err) {
    const trailers: Record<string, string> = {};
    setTrailerStatus(new Headers(), err).forEach((value, key) => { trailers[key] = value; });
    (res as http2.Http2ServerResponse).writeHead(200, grpcHeaders);
    res.addTrailers(trailers);
    res.end();
  },
};

const connectWire: UnaryWire = {
  timeoutMs: (req) => timeoutOf(parseConnectTimeout(headerValue(req.headers["connect-timeout-ms"]), maxTimeoutMs)),
  unwrap: (body) => body,
  answer(res, message) {
    (res as http.ServerResponse).writeHead(200, { "content-type": "application/proto", "content-length": message.length });
    res.end(message);
  },
  fail(res, err) {
    const body = errorToJsonBytes(err, {});
    const headers: Record<string, string | number> = {};
    err.metadata.forEach((value, key) => { headers[key] = value; });
    headers["content-type"] = "application/json";
    headers["content-length"] = body.length;
    (res as http.ServerResponse).writeHead(codeToHttpStatus(err.code), headers);
    res.end(body);
  },
};
