// Structured JSON logs (pino). One logger is created by the command (main.ts) and passed down; there is
// no global logger. Levels, most to least severe: fatal, error, warn, notice, info, debug, trace.
// `notice` (the default) sits between warn and info: lifecycle, failover and recovery events are
// notice or above, per-request access lines are info, so they are off unless asked for.
//
// What never reaches a log line: passwords, DSNs with credentials, statement parameters. The router
// does not pass those to the logger; as a second line of defence `err` values go through safeError
// (Postgres' own message, which may quote a parameter, is dropped; other messages are scrubbed of
// URL credentials and password=… pairs) and fields named like secrets are redacted.
import { Code, ConnectError } from "@connectrpc/connect";
import { pino } from "pino";
import { PostgresErrorDetailSchema } from "../../gen/shardrouter/v1/errors_pb.js";

export const logLevels = ["fatal", "error", "warn", "notice", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof logLevels)[number];
export type Logger = pino.Logger<"notice">;
export const defaultLogLevel: LogLevel = "notice";

const customLevels = { notice: 35 } as const;

export function isLogLevel(value: string): value is LogLevel {
  return (logLevels as readonly string[]).includes(value);
}

export interface LoggerOptions {
  level?: LogLevel;
  /** Where JSON lines go; default stdout, written synchronously (nothing is lost on process.exit). */
  destination?: pino.DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return pino<"notice">({
    name: "shardrouter",
    level: options.level ?? defaultLogLevel,
    customLevels,
    formatters: { level: (label) => ({ level: label }) },
    timestamp: pino.stdTimeFunctions.isoTime,
    serializers: { err: safeError, error: safeError },
    redact: {
      paths: [
        "password", "*.password", "dsn", "*.dsn", "connectionString", "*.connectionString",
        "params", "*.params", "parameters", "*.parameters",
      ],
      censor: "[redacted]",
    },
  }, options.destination ?? pino.destination({ fd: 1, sync: true }));
}

/** A logger that hands each JSON line (without its newline) to `write`. */
export function lineLogger(write: (line: string) => void, level?: LogLevel): Logger {
  return createLogger({ level, destination: { write: (s: string) => write(s.endsWith("\n") ? s.slice(0, -1) : s) } });
}

/** Logs nothing: the default of startRouter, so tests and embedders stay quiet unless they pass one. */
export function silentLogger(): Logger {
  return pino<"notice">({ level: "silent", customLevels });
}

/** Connect code → its wire name ("invalid_argument"); 0 is "ok". */
export const codeNames: readonly string[] = Array.from({ length: 17 }, (_, i) =>
  i === 0 ? "ok" : String(Code[i]).replace(/[A-Z]/g, (c, at: number) => (at ? "_" : "") + c.toLowerCase()));

export interface SafeError {
  code?: string;
  sqlstate?: string;
  shard?: string;
  node?: string;
  constraint?: string;
  table?: string;
  column?: string;
  type?: string;
  message?: string;
  /** Where a fault that is not a Connect or Postgres error was thrown (frames only). */
  stack?: string;
  /** What an internal error wraps. */
  cause?: SafeError;
}

/** The fields of an error that are safe to log (see the top of this file). */
export function safeError(err: unknown): SafeError {
  if (err instanceof ConnectError) {
    const code = codeNames[err.code] ?? String(err.code);
    const pg = err.findDetails(PostgresErrorDetailSchema)[0];
    if (pg) {
      // Postgres' message and detail can quote a parameter or a key value: only structured fields.
      return omitEmpty({ code, sqlstate: pg.sqlstate, shard: pg.shard, node: pg.node, constraint: pg.constraint, table: pg.table, column: pg.column });
    }
    // An internal error says nothing useful by itself: what it wraps does.
    const cause = err.code === Code.Internal && err.cause !== undefined && err.cause !== err ? safeError(err.cause) : undefined;
    return omitEmpty({ code, message: scrub(err.rawMessage), cause });
  }
  if (err instanceof Error) {
    const e = err as Error & { code?: unknown };
    if (e.name === "PostgresError") return omitEmpty({ type: e.name, sqlstate: typeof e.code === "string" ? e.code : undefined });
    return omitEmpty({ type: e.name, code: typeof e.code === "string" ? e.code : undefined, message: scrub(e.message), stack: framesOf(e) });
  }
  return { type: typeof err };
}

const maxMessage = 500;

/** Removes credentials from free text: `scheme://user:pass@` and `password=…` pairs; bounds its length. */
export function scrub(text: string, max = maxMessage): string {
  const clean = text
    .replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s/@]*@/gi, "$1[redacted]@")
    .replace(/(password\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,;]+)/gi, "$1[redacted]");
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

/** The "at …" lines of a stack: its first line repeats the message, which is scrubbed separately. */
function framesOf(e: Error): string | undefined {
  const frames = (e.stack ?? "").split("\n").filter((l) => l.startsWith("    at ")).slice(0, 12);
  return frames.length ? scrub(frames.map((l) => l.trim()).join("\n"), 2000) : undefined;
}

function omitEmpty<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined || o[k] === "") delete o[k];
  return o;
}
