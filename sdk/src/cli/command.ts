// What every command shares: its description (for usage and --help), the parsed flags, the clients
// (made on first use, closed at the end), where output goes, and the errors that end a run.
import type { ParseArgsConfig } from "node:util";
import { Code, ConnectError, createClient as createRpcClient, type Client } from "@connectrpc/connect";
import type { ShardRouterClient } from "../client.ts";
import { sqlstateOf } from "../errors.ts";
import { AdminService } from "../gen/shardrouter/v1/admin_pb.ts";
import { createNodeConnectTransport } from "../node-connect-transport.ts";
import { createClient } from "../node.ts";
import { headerInterceptor } from "../transports.ts";
import { type Style, printable, toJson } from "./output.ts";

export type Options = NonNullable<ParseArgsConfig["options"]>;
export type Values = Record<string, string | boolean | string[] | undefined>;

export interface Command {
  /** The words that name it: "route", "reshard add". */
  name: string;
  /** What follows the name in the usage line: "KEY", "--key K SQL [PARAM …]". */
  args: string;
  /** One line for the command list. */
  summary: string;
  /** More lines for `--help`: flags and notes. */
  help?: string;
  /** Its own flags (the global ones are added). */
  options: Options;
  run(ctx: Context): Promise<number>;
}

/** A mistake in the command line: exit 2, the message and the command's usage on stderr. */
export class UsageError extends Error {
  override name = "UsageError";
}

export const defaultUrl = "http://127.0.0.1:8080";

/** Flags every command takes. */
export const globalOptions: Options = {
  url: { type: "string" },
  token: { type: "string" },
  timeout: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

export const globalHelp: string = `global flags (before or after the command):
  --url URL       the router (default $SHARDROUTER_URL, else ${defaultUrl})
  --token TOKEN   bearer token: a JWT or an API key (default $SHARDROUTER_TOKEN). A flag is visible to
                  every user of this machine in \`ps\`: prefer the environment variable
  --timeout MS    deadline of each call (default none); the router cancels the statement when it passes
  --json          one JSON document on stdout, for scripts (64-bit integers as strings: see --help)
  -h, --help      this help, or a command's (shardrouter COMMAND --help)`;

export interface Context {
  values: Values;
  positionals: string[];
  json: boolean;
  style: Style;
  /** Writes to stdout. */
  out(text: string): void;
  /** Writes a line to stderr (progress, warnings). */
  note(line: string): void;
  /** The SDK client for RouterService. */
  router(): ShardRouterClient;
  /** The generated AdminService client, on the SDK's Node Connect transport. */
  admin(): Client<typeof AdminService>;
}

export interface Connection {
  url: string;
  token: string | undefined;
  timeoutMs: number | undefined;
}

/** --url, --token, --timeout over the environment; a URL that is not http(s) is a usage error. */
export function connectionOf(values: Values, env: Record<string, string | undefined>): Connection {
  const url = (values.url as string | undefined) ?? (env.SHARDROUTER_URL || defaultUrl);
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    // reported below
  }
  if (parsed?.protocol !== "http:" && parsed?.protocol !== "https:") throw new UsageError(`--url: ${JSON.stringify(url)} is not an http:// or https:// URL`);
  const token = (values.token as string | undefined) ?? (env.SHARDROUTER_TOKEN || undefined);
  const timeout = values.timeout as string | undefined;
  let timeoutMs: number | undefined;
  if (timeout !== undefined) {
    timeoutMs = Number(timeout);
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw new UsageError(`--timeout: "${timeout}" must be a whole number of milliseconds >= 1`);
  }
  return { url, token, timeoutMs };
}

/** The clients of a run, made on first use; close() releases their connections. */
export function clients(conn: Connection): { router(): ShardRouterClient; admin(): Client<typeof AdminService>; close(): void } {
  let router: ShardRouterClient | undefined;
  let admin: { client: Client<typeof AdminService>; close(): void } | undefined;
  return {
    router() {
      // Timestamps as RFC 3339 text (Postgres' microseconds kept), json as the document's text.
      router ??= createClient({ baseUrl: conn.url, token: conn.token, timeoutMs: conn.timeoutMs, decode: { timestamps: "string", json: "text" } });
      return router;
    },
    admin() {
      if (!admin) {
        const transport = createNodeConnectTransport({
          baseUrl: conn.url, defaultTimeoutMs: conn.timeoutMs, interceptors: conn.token ? [headerInterceptor({ token: conn.token })] : [],
        });
        admin = { client: createRpcClient(AdminService, transport), close: () => transport.close() };
      }
      return admin.client;
    },
    close() {
      router?.close();
      admin?.close();
    },
  };
}

/** "message (Code, SQLSTATE x)": the SQLSTATE unless the router's message says it already ("… (SQLSTATE 42P01) on shard …"). */
export function failure(message: string, code: Code, sqlstate: string | undefined): string {
  const said = !sqlstate || message.includes(`SQLSTATE ${sqlstate}`);
  return printable(`${message} (${Code[code]}${said ? "" : `, SQLSTATE ${sqlstate}`})`);
}

/**
 * The one line a failed call leaves on stderr: the message, the code, and the SQLSTATE when Postgres
 * refused the statement. The token never appears (were the router to echo it, it is masked).
 */
export function errorLine(err: unknown, token: string | undefined): string {
  let line = err instanceof ConnectError ? failure(err.rawMessage, err.code, sqlstateOf(err)) : printable(err instanceof Error ? err.message : String(err));
  if (err instanceof ConnectError && err.code === Code.Unauthenticated && !token) line += ": no token was sent; set SHARDROUTER_TOKEN";
  if (token && token.length >= 8) line = line.split(token).join("***");
  return `shardrouter: ${line}`;
}

/** Prints `doc` as JSON with --json, otherwise what `human` makes of it. */
export function print(ctx: Context, doc: unknown, human: () => string): void {
  ctx.out(ctx.json ? `${toJson(doc)}\n` : human());
}

/** The positional arguments a command expects, or a usage error. */
export function expectArgs(ctx: Context, min: number, max: number, what: string): string[] {
  const n = ctx.positionals.length;
  if (n < min) throw new UsageError(`missing ${what}`);
  if (n > max) throw new UsageError(`unexpected argument ${JSON.stringify(ctx.positionals[max])}`);
  return ctx.positionals;
}

/** A flag's value as a whole number >= min, or undefined when it was not given. */
export function intFlag(values: Values, name: string, min: number): number | undefined {
  const text = values[name] as string | undefined;
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text.trim() === "" || !Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name}: "${text}" must be a whole number >= ${min}`);
  return n;
}
