// "@shardrouter/sdk/node": everything of the main entry, plus protocol "grpc" (HTTP/2, cleartext h2c
// for http:// URLs) on a lean node:http2 transport (node-grpc-transport.ts). Kept apart so Deno and
// browsers never load node:http2.
import { ShardRouterClient } from "./client.js";
import { type ClientOptions, createClient as createFetchClient } from "./index.js";
import { createNodeGrpcTransport } from "./node-grpc-transport.js";
import { interceptorsOf } from "./transports.js";

export * from "./index.js";
export { type NodeGrpcTransport, type NodeGrpcTransportOptions, createNodeGrpcTransport } from "./node-grpc-transport.js";

/** Like the main entry's createClient; protocol "grpc" holds one HTTP/2 connection, released by close(). */
export function createClient(options: ClientOptions): ShardRouterClient {
  if (options.protocol !== "grpc") return createFetchClient(options);
  // With no token, headers or interceptors there is nothing to intercept: unary calls skip the chain.
  const plain = options.token === undefined && Object.keys(options.headers ?? {}).length === 0 && !options.interceptors?.length;
  const transport = createNodeGrpcTransport({
    baseUrl: options.baseUrl,
    interceptors: plain ? [] : interceptorsOf(options),
    defaultTimeoutMs: options.timeoutMs,
  });
  return new ShardRouterClient(transport, { decode: options.decode, close: () => transport.close() });
}
