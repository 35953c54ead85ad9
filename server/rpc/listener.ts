// One plaintext port for both HTTP/1.1 (Connect, gRPC-Web, fetch from Deno and browsers) and HTTP/2
// cleartext (gRPC, buf curl --http2-prior-knowledge). Node cannot do both on one socket by itself, so
// the first bytes of each connection decide: an HTTP/2 client always opens with "PRI * HTTP/2.0".
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import * as tls from "node:tls";

type Handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

export interface Listener {
  readonly host: string;
  readonly port: number;
  /** Stops accepting, lets in-flight requests finish for up to `graceMs`, then closes what is left. */
  close(graceMs?: number): Promise<void>;
}

export interface ListenOptions {
  /** Answers a plain HTTP/1.1 request (e.g. GET /metrics) before the RPC handler; true when it did. */
  http1?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
  /**
   * Serves a raw HTTP/2 stream (the unary fast path); true when it did. Streams it leaves get
   * Node's compatibility request and response, built here, and go to the handler.
   */
  http2Stream?: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => boolean;
  /**
   * Serve TLS instead of plaintext: ALPN picks HTTP/2 (gRPC) or HTTP/1.1 (Connect, fetch). With `ca`,
   * clients are asked for a certificate; an unverified or missing one is not refused here but left
   * to the authenticator, which answers `unauthenticated` in the caller's protocol.
   */
  tls?: { cert: Buffer; key: Buffer; ca?: Buffer };
}

export async function listen(handler: Handler, host: string, port: number, options: ListenOptions = {}): Promise<Listener> {
  // Requests in flight, so a shutdown can wait for exactly them and no longer.
  let inFlight = 0;
  let draining = false;
  let drained: (() => void) | undefined;
  const count = (closing: { once(event: "close", f: () => void): unknown }) => {
    inFlight++;
    closing.once("close", () => {
      if (--inFlight === 0 && draining) drained?.();
    });
  };
  const h1 = http.createServer((req, res) => {
    count(res);
    // While draining, HTTP/1.1 clients are told not to reuse the connection.
    if (draining) res.setHeader("connection", "close");
    if (options.http1?.(req, res)) return;
    handler(req, res);
  });
  // No request listener: Node would then wrap every stream in its compatibility objects, which
  // the fast path does without (it is how node:http2 itself sets them up, in onServerStream).
  const h2 = http2.createServer();
  h2.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
    count(stream);
    if (options.http2Stream?.(stream, headers)) return;
    handler(new http2.Http2ServerRequest(stream, headers, undefined as never, rawHeaders), new http2.Http2ServerResponse(stream));
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (s) => { sessions.add(s); s.once("close", () => sessions.delete(s)); });

  const plaintext = (socket: net.Socket) => {
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      if (head.length < 3 && "PRI".startsWith(head.toString("latin1"))) return; // not enough to decide
      socket.removeListener("data", onData);
      socket.pause();
      socket.unshift(head);
      if (head.toString("latin1", 0, 3) === "PRI") {
        // http2 reads what is already buffered on the next tick; resuming here would flush it away.
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
    socket.on("error", () => socket.destroy());
  };
  const server = options.tls
    ? tls.createServer({
      cert: options.tls.cert, key: options.tls.key, ca: options.tls.ca, requestCert: options.tls.ca !== undefined,
      rejectUnauthorized: false, ALPNProtocols: ["h2", "http/1.1"],
    }, (socket) => {
      socket.on("error", () => socket.destroy());
      if (socket.alpnProtocol === "h2") h2.emit("connection", socket);
      else h1.emit("connection", socket);
    })
    : net.createServer(plaintext);
  server.on("tlsClientError", () => {}); // a failed handshake is the client's problem, not a crash

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => { server.off("error", reject); resolve(); });
  });
  const address = server.address() as net.AddressInfo;

  return {
    host,
    port: address.port,
    async close(graceMs = 5000) {
      draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sessions) s.close(); // GOAWAY: finish open streams, accept no new ones
      h1.closeIdleConnections();
      // Wait for the requests in flight (bounded by the grace period), then close what is left.
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        if (inFlight === 0) return resolve();
        drained = resolve;
        timer = setTimeout(resolve, graceMs);
      });
      clearTimeout(timer);
      h1.closeAllConnections();
      for (const s of sessions) s.destroy();
      await closed;
    },
  };
}
