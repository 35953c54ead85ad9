// "@shardrouter/sdk/node": everything of the main entry, plus protocol "grpc" (HTTP/2, cleartext h2c
// for http:// URLs) through connect-node. Kept apart so Deno and browsers never load node:http2.
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";
import { ShardRouterClient } from "./client.js";
import { type ClientOptions, createClient as createFetchClient } from "./index.js";
import { interceptorsOf } from "./transports.js";

export * from "./index.js";

/** Like the main entry's createClient; protocol "grpc" holds one HTTP/2 connection, released by close(). */
export function createClient(options: ClientOptions): ShardRouterClient {
  if (options.protocol !== "grpc") return createFetchClient(options);
  const sessionManager = new Http2SessionManager(options.baseUrl);
  const transport = createGrpcTransport({
    baseUrl: options.baseUrl,
    sessionManager,
    interceptors: interceptorsOf(options),
    defaultTimeoutMs: options.timeoutMs,
  });
  return new ShardRouterClient(transport, { decode: options.decode, close: () => sessionManager.abort() });
}
