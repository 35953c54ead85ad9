// "@shardrouter/sdk/node": everything of the main entry, with lean node: transports for unary calls:
// protocol "connect" (the default) on node:http keep-alive connections (node-connect-transport.ts),
// and protocol "grpc" (HTTP/2, cleartext h2c for http:// URLs) on node:http2 (node-grpc-transport.ts).
// "grpc-web", and "connect" with a caller's own fetch, stay on fetch. Kept apart so Deno and browsers
// never load node: modules.
import { ShardRouterClient } from "./client.ts";
import { type ClientOptions, createClient as createFetchClient } from "./index.ts";
import { createNodeConnectTransport } from "./node-connect-transport.ts";
import { createNodeGrpcTransport } from "./node-grpc-transport.ts";
import { interceptorsOf } from "./transports.ts";

export * from "./index.ts";
export { type NodeConnectTransport, type NodeConnectTransportOptions, createNodeConnectTransport } from "./node-connect-transport.ts";
export { type NodeGrpcTransport, type NodeGrpcTransportOptions, createNodeGrpcTransport } from "./node-grpc-transport.ts";

/** TLS for an https:// router: the CA that signed its certificate, and a client certificate (mTLS). */
export interface ClientTls {
  /** The CA(s) to trust instead of Node's defaults (PEM). */
  ca?: string | Buffer | (string | Buffer)[];
  /** A client certificate and its key (PEM): the router maps its subject alternative name to an identity. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** The name to check the router's certificate against, when it is not the URL's host. */
  servername?: string;
}

export interface NodeClientOptions extends ClientOptions {
  /** For https:// URLs on the lean transports ("connect" and "grpc"). */
  tls?: ClientTls;
}

/**
 * Like the main entry's createClient, on Node's own HTTP stack: "connect" keeps HTTP/1.1 keep-alive
 * connections, "grpc" one HTTP/2 connection; close() releases them (idle ones never keep the process alive).
 */
export function createClient(options: NodeClientOptions): ShardRouterClient {
  const protocol = options.protocol ?? "connect";
  // A caller's fetch (a proxy, a test double) is honoured: that client stays on fetch.
  const lean = protocol === "grpc" || (protocol === "connect" && options.fetch === undefined);
  if (!lean) {
    if (options.tls) throw new TypeError(`tls: protocol "${protocol}"${options.fetch ? " with your own fetch" : ""} runs on fetch, which takes no TLS options; use "connect" or "grpc"`);
    return createFetchClient(options);
  }
  // With no token, headers or interceptors there is nothing to intercept: unary calls skip the chain.
  const plain = options.token === undefined && Object.keys(options.headers ?? {}).length === 0 && !options.interceptors?.length;
  const transportOptions = { baseUrl: options.baseUrl, interceptors: plain ? [] : interceptorsOf(options), defaultTimeoutMs: options.timeoutMs };
  const tls = options.tls && { ...options.tls, rejectUnauthorized: true }; // never weakened here
  const transport = protocol === "grpc"
    ? createNodeGrpcTransport({ ...transportOptions, nodeOptions: tls })
    : createNodeConnectTransport({ ...transportOptions, agentOptions: tls });
  return new ShardRouterClient(transport, { decode: options.decode, close: () => transport.close() });
}
