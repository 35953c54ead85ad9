// The fetch transports (Connect, gRPC-Web): the same code in Node >= 20, Deno and browsers. gRPC needs
// HTTP/2 and lives in node.ts, so Deno never loads node-only modules.
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";

export type Protocol = "connect" | "grpc" | "grpc-web";

export interface TransportOptions {
  /** The router's URL, e.g. "http://127.0.0.1:8080". */
  baseUrl: string;
  /** "connect" (default) or "grpc-web" anywhere; "grpc" (HTTP/2) from "@shardrouter/sdk/node" only. */
  protocol?: Protocol;
  /** Sent as `authorization: Bearer <token>` on every call; a function is asked on every call. */
  token?: string | (() => string | Promise<string>);
  /** Deadline for each call unless the call sets its own; the router cancels the statement when it passes. */
  timeoutMs?: number;
  /** Headers sent on every call. */
  headers?: Record<string, string>;
  /** A fetch to use instead of globalThis.fetch (proxies, tests). Fetch transports only. */
  fetch?: typeof globalThis.fetch;
  /** More interceptors, run after the SDK's own. */
  interceptors?: Interceptor[];
}

/** Adds the configured headers and bearer token to every request. */
export function headerInterceptor(opts: Pick<TransportOptions, "token" | "headers">): Interceptor {
  return (next) => async (req) => {
    for (const [name, value] of Object.entries(opts.headers ?? {})) req.header.set(name, value);
    const token = typeof opts.token === "function" ? await opts.token() : opts.token;
    if (token) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

export function interceptorsOf(opts: TransportOptions): Interceptor[] {
  return [headerInterceptor(opts), ...(opts.interceptors ?? [])];
}

export function fetchTransport(opts: TransportOptions): Transport {
  const common = {
    baseUrl: opts.baseUrl,
    useBinaryFormat: true,
    interceptors: interceptorsOf(opts),
    defaultTimeoutMs: opts.timeoutMs,
    fetch: opts.fetch,
  };
  switch (opts.protocol ?? "connect") {
    case "connect": return createConnectTransport(common);
    case "grpc-web": return createGrpcWebTransport(common);
    case "grpc":
      throw new TypeError('protocol "grpc" needs HTTP/2, which fetch cannot speak: import createClient from "@shardrouter/sdk/node" (Node), or use "connect"');
    default:
      throw new TypeError(`unknown protocol ${JSON.stringify(opts.protocol)}: expected "connect", "grpc-web" or "grpc"`);
  }
}
