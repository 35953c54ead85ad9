// A lean gRPC transport for Node: unary calls straight on one node:http2 session, without connect-es'
// async-iterable pipelines, per-call AbortControllers and fetch Headers, which cost several hundred
// µs of CPU per call. Errors come out as connect-node's gRPC transport gives them (same codes,
// messages, metadata and details). Server streams are not on the hot path: they go through
// connect-node's transport, made on first use.
import * as http2 from "node:http2";
import * as zlib from "node:zlib";
import { type DescMessage, type DescMethodUnary, type MessageShape, fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor, type Transport, type UnaryResponse } from "@connectrpc/connect";
import { getAbortSignalReason } from "@connectrpc/connect/protocol";
import { validateResponseWithCompression, validateTrailer } from "@connectrpc/connect/protocol-grpc";
import { Http2SessionManager, compressionBrotli, compressionGzip, createGrpcTransport } from "@connectrpc/connect-node";
import { connectErrorFromNodeReason, leanUnary, toNodeHeaders, userAgent, webHeaders } from "./node-shared.ts";

export interface NodeGrpcTransportOptions {
  /** The server, e.g. "http://127.0.0.1:8080" (h2c) or "https://…" (TLS). */
  baseUrl: string;
  /** Run around every call, as with connect-node; without any, unary calls skip the chain. */
  interceptors?: Interceptor[];
  /** Deadline of calls that set none. */
  defaultTimeoutMs?: number;
  /** For http2.connect (TLS: ca, cert …). */
  nodeOptions?: http2.ClientSessionOptions | http2.SecureClientSessionOptions;
}

export interface NodeGrpcTransport extends Transport {
  /** Closes the HTTP/2 connection(s); calls in flight fail with Canceled. A later call reconnects. */
  close(): void;
}

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR } = http2.constants;
const contentTypeProto = "application/grpc+proto";
// The same codecs connect-node accepts, for a server that compresses although we never ask it to.
const acceptCompression = [compressionGzip, compressionBrotli];

export function createNodeGrpcTransport(options: NodeGrpcTransportOptions): NodeGrpcTransport {
  const url = new URL(options.baseUrl);
  const authority = url.origin;
  const interceptors = options.interceptors ?? [];
  const sessions = new SessionPool(authority, options.nodeOptions);

  let streams: { transport: Transport; sessionManager: Http2SessionManager } | undefined;
  const streamTransport = () => {
    if (!streams) {
      const sessionManager = new Http2SessionManager(options.baseUrl, undefined, options.nodeOptions);
      streams = {
        sessionManager,
        transport: createGrpcTransport({
          baseUrl: options.baseUrl, sessionManager, interceptors, defaultTimeoutMs: options.defaultTimeoutMs, nodeOptions: options.nodeOptions,
        }),
      };
    }
    return streams.transport;
  };

  return {
    unary: leanUnary(url, interceptors, options.defaultTimeoutMs, (path, m, sig, timeout, h, msg) => unaryCall(sessions, path, m, sig, timeout, h, msg)),
    stream(method, signal, timeoutMs, header, input, contextValues) {
      return streamTransport().stream(method, signal, timeoutMs, header, input, contextValues);
    },
    close() {
      sessions.close();
      streams?.sessionManager.abort();
    },
  };
}

/** One HTTP/2 session, opened on first use and again after it closed, errored or got a GOAWAY. */
class SessionPool {
  private current: Session | undefined;
  private readonly all = new Set<Session>();

  constructor(private readonly authority: string, private readonly nodeOptions: NodeGrpcTransportOptions["nodeOptions"]) {}

  /** A stream on a usable session; the session is held (ref'd) until release() for this stream. */
  request(headers: http2.OutgoingHttpHeaders): { stream: http2.ClientHttp2Stream; session: Session } {
    for (let attempt = 0; ; attempt++) {
      const s = this.usable();
      try {
        const stream = s.h2.request(headers);
        s.hold();
        return { stream, session: s };
      } catch (err) {
        // Closed between our check and the request (GOAWAY, destroyed): one more try on a new session.
        if (attempt === 0 && (s.h2.closed || s.h2.destroyed)) {
          this.drop(s);
          continue;
        }
        throw err;
      }
    }
  }

  close(): void {
    const err = new ConnectError("connection aborted", Code.Canceled);
    for (const s of this.all) if (!s.h2.destroyed) s.h2.destroy(err, NGHTTP2_CANCEL);
    this.all.clear();
    this.current = undefined;
  }

  private usable(): Session {
    const c = this.current;
    if (c !== undefined && !c.goneAway && !c.h2.closed && !c.h2.destroyed) return c;
    if (c !== undefined) this.drop(c);
    const s = new Session(http2.connect(this.authority, this.nodeOptions), (gone) => this.drop(gone), (ended) => this.all.delete(ended));
    this.current = s;
    this.all.add(s);
    return s;
  }

  private drop(s: Session): void {
    if (this.current === s) this.current = undefined;
  }
}

class Session {
  goneAway = false;
  private streams = 0;

  constructor(readonly h2: http2.ClientHttp2Session, onGone: (s: Session) => void, onEnded: (s: Session) => void) {
    // Idle sessions must not keep the process alive; hold() refs it while a call is in flight.
    h2.unref();
    // Streams get their own errors; this listener only keeps a session error from being uncaught.
    h2.on("error", () => onGone(this));
    h2.on("goaway", () => {
      this.goneAway = true;
      onGone(this);
      // Without streams nobody would close it; with streams Node closes it after the last one.
      if (this.streams === 0) h2.close();
    });
    h2.once("close", () => {
      onGone(this);
      onEnded(this);
    });
  }

  hold(): void {
    if (this.streams++ === 0) this.h2.ref();
  }

  release(): void {
    if (--this.streams === 0) {
      if (this.goneAway) this.h2.close();
      else this.h2.unref();
    }
  }
}

function grpcTimeout(ms: number): string {
  // At most 8 digits (gRPC over HTTP/2); connect-node sends `${ms}m`, which this equals below 10^8.
  const m = Math.ceil(ms);
  return m < 1e8 ? `${m}m` : `${Math.ceil(m / 1000)}S`;
}

/** One unary call on the session pool. Settles exactly once; the stream is RST on any failure. */
function unaryCall<I extends DescMessage, O extends DescMessage>(
  sessions: SessionPool, path: string, method: DescMethodUnary<I, O>, signal: AbortSignal | undefined,
  timeoutMs: number | undefined, header: HeadersInit | undefined, body: Uint8Array,
): Promise<UnaryResponse<I, O>> {
  const frame = Buffer.allocUnsafe(5 + body.byteLength);
  frame[0] = 0;
  frame.writeUInt32BE(body.byteLength, 1);
  frame.set(body, 5);

  const headers: http2.OutgoingHttpHeaders = { ":method": "POST", ":path": path };
  if (header !== undefined) toNodeHeaders(headers, header);
  headers["content-type"] = contentTypeProto;
  if (headers["user-agent"] === undefined) headers["user-agent"] = userAgent;
  if (timeoutMs !== undefined) headers["grpc-timeout"] = grpcTimeout(timeoutMs);
  headers.te = "trailers";

  return new Promise<UnaryResponse<I, O>>((resolve, reject) => {
    let stream: http2.ClientHttp2Stream;
    let session: Session;
    let settled = false;
    let retried = false;
    let timer: NodeJS.Timeout | undefined;
    let resHeaders: http2.IncomingHttpHeaders | undefined;
    let resTrailers: http2.IncomingHttpHeaders | undefined;
    let chunk: Buffer | undefined;
    let chunks: Buffer[] | undefined;

    const finish = () => {
      settled = true;
      session.release();
      if (timer !== undefined) clearTimeout(timer);
      if (signal !== undefined) signal.removeEventListener("abort", onAbort);
    };
    const fail = (err: ConnectError) => {
      if (settled) return;
      finish();
      // gRPC over HTTP/2: a client cancels with CANCEL; other client-side failures are INTERNAL_ERROR (as connect-node).
      if (!stream.closed) stream.close(err.code === Code.Canceled || err.code === Code.DeadlineExceeded ? NGHTTP2_CANCEL : NGHTTP2_INTERNAL_ERROR);
      reject(err);
    };
    function onAbort() {
      fail(ConnectError.from(getAbortSignalReason(signal!), Code.Canceled));
    }
    // REFUSED_STREAM guarantees the server did not process the request (RFC 9113 8.7): one more try on a
    // fresh connection (a session the server is closing refuses new streams before we see its GOAWAY).
    const retryRefused = (s: http2.ClientHttp2Stream) => {
      if (retried || resHeaders !== undefined || s.rstCode !== http2.constants.NGHTTP2_REFUSED_STREAM) return false;
      retried = true;
      session.goneAway = true;
      session.release();
      return start();
    };

    const start = (): boolean => {
      try {
        ({ stream, session } = sessions.request(headers));
      } catch (err) {
        settled = true;
        if (timer !== undefined) clearTimeout(timer);
        if (signal !== undefined) signal.removeEventListener("abort", onAbort);
        reject(connectErrorFromNodeReason(err));
        return true;
      }
      const s = stream;
      s.on("response", (h) => {
        resHeaders = h;
        // The usual answer needs no checking beyond this; anything else gets connect-es' own checks.
        if (h[":status"] === 200 && h["content-type"] === contentTypeProto && h["grpc-status"] === undefined && h["grpc-encoding"] === undefined) return;
        try {
          validateResponseWithCompression(acceptCompression, h[":status"] ?? 0, webHeaders(h));
        } catch (err) {
          fail(ConnectError.from(err));
        }
      });
      s.on("data", (d: Buffer) => {
        if (chunk === undefined) chunk = d;
        else (chunks ??= [chunk]).push(d);
      });
      s.on("trailers", (t) => {
        resTrailers = t;
      });
      s.on("end", () => {
        if (settled) return;
        let res: UnaryResponse<I, O>;
        try {
          res = responseOf(method, resHeaders, resTrailers, chunks ? Buffer.concat(chunks) : chunk);
        } catch (err) {
          fail(ConnectError.from(err));
          return;
        }
        finish();
        resolve(res);
      });
      s.on("error", (err) => {
        if (settled || s !== stream || retryRefused(s)) return;
        fail(connectErrorFromNodeReason(err));
      });
      s.on("close", () => {
        if (settled || s !== stream || retryRefused(s)) return;
        fail(connectErrorFromH2ResetCode(s.rstCode) ?? new ConnectError("protocol error: missing status", Code.Internal));
      });
      s.end(frame);
      return true;
    };

    if (!start()) return;
    if (settled) return;
    if (signal !== undefined) signal.addEventListener("abort", onAbort);
    if (timeoutMs !== undefined) timer = setTimeout(() => fail(new ConnectError("the operation timed out", Code.DeadlineExceeded)), timeoutMs);
  });
}

/** The response of a finished stream, or the error connect-node's gRPC transport would throw for it. */
function responseOf<I extends DescMessage, O extends DescMessage>(
  method: DescMethodUnary<I, O>, h: http2.IncomingHttpHeaders | undefined, t: http2.IncomingHttpHeaders | undefined, body: Buffer | undefined,
): UnaryResponse<I, O> {
  let data: Uint8Array | undefined;
  let compressed = false;
  if (body !== undefined) {
    let off = 0;
    while (off < body.length) {
      if (body.length - off < 5) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
      const len = body.readUInt32BE(off + 1);
      if (body.length - off - 5 < len) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
      if (data !== undefined) throw new ConnectError("protocol error: received extra output message for unary method", Code.Unimplemented);
      compressed = (body[off] & 1) === 1;
      // A plain Uint8Array copy: bytes fields are views into it, and must not be Buffers (nor pin Node's read buffers).
      data = new Uint8Array(body.subarray(off + 5, off + 5 + len));
      off += 5 + len;
    }
  }
  const happy = data !== undefined && !compressed && t !== undefined && t["grpc-status"] === "0" && t["grpc-status-details-bin"] === undefined;
  if (!happy) {
    // The rare paths, written as connect-es' gRPC transport orders its checks.
    const header = webHeaders(h);
    const trailer = webHeaders(t);
    const { headerError, compression } = validateResponseWithCompression(acceptCompression, Number(h?.[":status"] ?? 0), header);
    if (data !== undefined && compressed) data = decompress(data, compression?.name);
    validateTrailer(trailer, header);
    if (data === undefined) {
      if (headerError) throw headerError;
      throw new ConnectError("protocol error: missing output message for unary method", trailer.has("grpc-status") ? Code.Unimplemented : Code.Unknown);
    }
    if (headerError) throw new ConnectError("protocol error: received output message for unary method with error status", Code.Unknown);
  }
  let output: MessageShape<O>;
  try {
    output = fromBinary(method.output, data!);
  } catch (err) {
    throw new ConnectError(`parse binary: ${err instanceof Error ? err.message : String(err)}`, Code.Internal);
  }
  // fetch Headers only when someone looks (onHeader, onTrailer, an interceptor).
  let header: Headers | undefined;
  let trailer: Headers | undefined;
  return {
    stream: false, service: method.parent, method, message: output,
    get header() { return (header ??= webHeaders(h)); },
    get trailer() { return (trailer ??= webHeaders(t)); },
  };
}

function decompress(data: Uint8Array, encoding: string | undefined): Uint8Array {
  try {
    if (encoding === "gzip") return zlib.gunzipSync(data);
    if (encoding === "br") return zlib.brotliDecompressSync(data);
  } catch (err) {
    throw ConnectError.from(err, Code.Internal);
  }
  throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
}

const h2CodeNames: Record<number, [string, Code]> = {
  1: ["PROTOCOL_ERROR", Code.Internal], 2: ["INTERNAL_ERROR", Code.Internal], 3: ["FLOW_CONTROL_ERROR", Code.Internal],
  4: ["SETTINGS_TIMEOUT", Code.Internal], 6: ["FRAME_SIZE_ERROR", Code.Internal], 7: ["REFUSED_STREAM", Code.Unavailable],
  8: ["CANCEL", Code.Canceled], 9: ["COMPRESSION_ERROR", Code.Internal], 10: ["CONNECT_ERROR", Code.Internal],
  11: ["ENHANCE_YOUR_CALM", Code.ResourceExhausted], 12: ["INADEQUATE_SECURITY", Code.PermissionDenied],
  13: ["HTTP_1_1_REQUIRED", Code.PermissionDenied],
};

function connectErrorFromH2ResetCode(rstCode: number): ConnectError | undefined {
  const known = h2CodeNames[rstCode];
  return known && new ConnectError(`http/2 stream closed with error code ${known[0]} (0x${rstCode.toString(16)})`, known[1]);
}
