// A lean Connect transport for Node: unary calls (binary, POST) straight on node:http with keep-alive
// connections, without fetch (undici's WHATWG streams and Headers), connect-es' async-iterable
// pipelines and per-call AbortControllers, which cost several hundred µs of CPU per call. Errors come
// out as connect-node's Connect transport gives them (same codes, messages, metadata and details).
// Server streams are not on the hot path: they go through connect-node's Connect transport, made on
// first use, on the same agent (so close() ends them too).
import * as http from "node:http";
import * as https from "node:https";
import { type DescMessage, type DescMethodUnary, type MessageShape, fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor, type Transport, type UnaryResponse, appendHeaders } from "@connectrpc/connect";
import { getAbortSignalReason } from "@connectrpc/connect/protocol";
import { errorFromJsonBytes, trailerDemux, validateResponseWithCompression } from "@connectrpc/connect/protocol-connect";
import { compressionBrotli, compressionGzip, createConnectTransport } from "@connectrpc/connect-node";
import { connectErrorFromNodeReason, leanUnary, toNodeHeaders, userAgent, webHeaders } from "./node-shared.ts";

export interface NodeConnectTransportOptions {
  /** The server, e.g. "http://127.0.0.1:8080" or "https://…". */
  baseUrl: string;
  /** Run around every call, as with connect-node; without any, unary calls skip the chain. */
  interceptors?: Interceptor[];
  /** Deadline of calls that set none. */
  defaultTimeoutMs?: number;
  /**
   * For the transport's own http.Agent / https.Agent (TLS: ca, cert, rejectUnauthorized …). keepAlive
   * is always on; the defaults are maxSockets 256 and timeout 5000 (as Node's global agent, so an idle
   * socket is dropped before the server's announced keep-alive timeout).
   */
  agentOptions?: https.AgentOptions;
}

export interface NodeConnectTransport extends Transport {
  /** Closes the keep-alive connections; calls in flight fail with Canceled. A later call reconnects. */
  close(): void;
}

const contentTypeProto = "application/proto";
// The codecs connect-node accepts, for a server that compresses although we never ask it to.
const acceptCompression = [compressionGzip, compressionBrotli];
const readMaxBytes = 0xffffffff; // connect-node's default

interface Target {
  request: typeof http.request;
  agent: http.Agent;
  hostname: string;
  port: number;
  /** Calls in flight, so close() can fail them with Canceled. */
  inFlight: Set<(err: ConnectError) => void>;
}

export function createNodeConnectTransport(options: NodeConnectTransportOptions): NodeConnectTransport {
  const url = new URL(options.baseUrl);
  const secure = url.protocol === "https:";
  if (!secure && url.protocol !== "http:") throw new TypeError(`baseUrl ${options.baseUrl}: expected an http:// or https:// URL`);
  const agentOptions: https.AgentOptions = { maxSockets: 256, timeout: 5000, ...options.agentOptions, keepAlive: true };
  const target: Target = {
    request: secure ? https.request : http.request,
    agent: secure ? new https.Agent(agentOptions) : new http.Agent(agentOptions),
    hostname: url.hostname.replace(/^\[(.*)\]$/, "$1"), // an IPv6 literal without its brackets
    port: url.port === "" ? (secure ? 443 : 80) : Number(url.port),
    inFlight: new Set(),
  };
  const interceptors = options.interceptors ?? [];

  let streams: Transport | undefined;
  const streamTransport = () => (streams ??= createConnectTransport({
    baseUrl: options.baseUrl, httpVersion: "1.1", useBinaryFormat: true, interceptors, defaultTimeoutMs: options.defaultTimeoutMs,
    nodeOptions: { agent: target.agent },
  }));

  return {
    unary: leanUnary(url, interceptors, options.defaultTimeoutMs, (path, m, sig, timeout, h, msg) => unaryCall(target, path, m, sig, timeout, h, msg)),
    stream(method, signal, timeoutMs, header, input, contextValues) {
      return streamTransport().stream(method, signal, timeoutMs, header, input, contextValues);
    },
    close() {
      const err = new ConnectError("connection aborted", Code.Canceled);
      for (const fail of [...target.inFlight]) fail(err);
      target.agent.destroy();
    },
  };
}

/** One unary call. Settles exactly once; the request (and its socket) is destroyed on any failure before the response ended. */
function unaryCall<I extends DescMessage, O extends DescMessage>(
  target: Target, path: string, method: DescMethodUnary<I, O>, signal: AbortSignal | undefined,
  timeoutMs: number | undefined, header: HeadersInit | undefined, body: Uint8Array,
): Promise<UnaryResponse<I, O>> {

  // As connect-es' requestHeader: the caller's headers, then the protocol's own over them.
  const headers: http.OutgoingHttpHeaders = {};
  if (header !== undefined) toNodeHeaders(headers, header);
  headers["content-type"] = contentTypeProto;
  headers["connect-protocol-version"] = "1";
  // connect-es sends `${timeoutMs}`; the Connect protocol wants an integer, which this equals for integer deadlines.
  if (timeoutMs !== undefined) headers["connect-timeout-ms"] = String(Math.ceil(timeoutMs));
  if (headers["user-agent"] === undefined) headers["user-agent"] = userAgent;
  headers["content-length"] = body.byteLength;

  return new Promise<UnaryResponse<I, O>>((resolve, reject) => {
    let req: http.ClientRequest;
    try {
      req = target.request({ agent: target.agent, hostname: target.hostname, port: target.port, path, method: "POST", headers });
    } catch (err) {
      // An invalid header name or value: as connect-node, whose http.request throws the same way.
      reject(ConnectError.from(err));
      return;
    }
    let settled = false;
    let ended = false; // the whole response is read: the socket goes back to the agent
    let timer: NodeJS.Timeout | undefined;
    let chunk: Buffer | undefined;
    let chunks: Buffer[] | undefined;
    // Set when the response needs connect-es' own handling (an error status, compression).
    let unusual: ReturnType<typeof validateResponseWithCompression> | undefined;

    const finish = () => {
      settled = true;
      target.inFlight.delete(fail);
      if (timer !== undefined) clearTimeout(timer);
      if (signal !== undefined) signal.removeEventListener("abort", onAbort);
    };
    function fail(err: ConnectError) {
      if (settled) return;
      finish();
      // Closes the socket, so the server sees the client go away; a read response leaves it to the agent.
      if (!ended) req.destroy();
      reject(err);
    }
    function onAbort() {
      fail(ConnectError.from(getAbortSignalReason(signal!), Code.Canceled));
    }
    // Node errors, also those after a failure (the request is destroyed then): without a listener they would be uncaught.
    const onError = (err: Error) => fail(connectErrorFromNodeReason(err));

    req.on("error", onError);
    req.on("response", (res: http.IncomingMessage) => {
      res.on("error", onError);
      if (settled) return;
      const h = res.headers;
      // The usual answer needs no checking beyond this; anything else gets connect-es' own checks.
      if (res.statusCode !== 200 || h["content-type"] !== contentTypeProto || h["content-encoding"] !== undefined) {
        try {
          unusual = validateResponseWithCompression("unary", acceptCompression, true, res.statusCode ?? 0, webHeaders(h));
        } catch (err) {
          fail(ConnectError.from(err));
          return;
        }
      }
      res.on("data", (d: Buffer) => {
        if (chunk === undefined) chunk = d;
        else (chunks ??= [chunk]).push(d);
      });
      res.on("end", () => {
        ended = true;
        if (settled) return;
        // A plain Uint8Array copy: bytes fields are views into it, and must not be Buffers (nor pin Node's read buffers).
        const data = chunks !== undefined ? joined(chunks) : chunk !== undefined ? new Uint8Array(chunk) : new Uint8Array(0);
        if (unusual === undefined) {
          let out: UnaryResponse<I, O>;
          try {
            out = responseOf(method, h, data);
          } catch (err) {
            fail(ConnectError.from(err));
            return;
          }
          finish();
          resolve(out);
          return;
        }
        unusualResponse(method, h, data, unusual).then((out) => {
          if (settled) return;
          finish();
          resolve(out);
        }, (err) => fail(ConnectError.from(err)));
      });
      // The response ended without "end" and without an error (should not happen): do not hang.
      res.on("close", () => {
        if (!ended) fail(new ConnectError("protocol error: response closed early", Code.Internal));
      });
    });
    req.end(body);

    target.inFlight.add(fail);
    if (signal !== undefined) signal.addEventListener("abort", onAbort);
    if (timeoutMs !== undefined) timer = setTimeout(() => fail(new ConnectError("the operation timed out", Code.DeadlineExceeded)), timeoutMs);
  });
}

function joined(chunks: Buffer[]): Uint8Array {
  let n = 0;
  for (const c of chunks) n += c.byteLength;
  const out = new Uint8Array(n);
  n = 0;
  for (const c of chunks) {
    out.set(c, n);
    n += c.byteLength;
  }
  return out;
}

/** A 200 application/proto response without compression. */
function responseOf<I extends DescMessage, O extends DescMessage>(
  method: DescMethodUnary<I, O>, h: http.IncomingHttpHeaders, data: Uint8Array,
): UnaryResponse<I, O> {
  let output: MessageShape<O>;
  try {
    output = fromBinary(method.output, data);
  } catch (err) {
    throw new ConnectError(`parse binary: ${err instanceof Error ? err.message : String(err)}`, Code.Internal);
  }
  // fetch Headers only when someone looks (onHeader, onTrailer, an interceptor); "trailer-" ones are the trailers.
  let demuxed: [Headers, Headers] | undefined;
  return {
    stream: false, service: method.parent, method, message: output,
    get header() { return (demuxed ??= trailerDemux(webHeaders(h)))[0]; },
    get trailer() { return (demuxed ??= trailerDemux(webHeaders(h)))[1]; },
  };
}

/** The rare paths, in the order of connect-es' Connect transport: decompress, then an error status's JSON body, then the message. */
async function unusualResponse<I extends DescMessage, O extends DescMessage>(
  method: DescMethodUnary<I, O>, h: http.IncomingHttpHeaders, data: Uint8Array, v: ReturnType<typeof validateResponseWithCompression>,
): Promise<UnaryResponse<I, O>> {
  if (v.compression) data = await v.compression.decompress(data, readMaxBytes);
  if (v.isUnaryError) {
    const [header, trailer] = trailerDemux(webHeaders(h));
    throw errorFromJsonBytes(data, appendHeaders(header, trailer), v.unaryError!);
  }
  return responseOf(method, h, data);
}
