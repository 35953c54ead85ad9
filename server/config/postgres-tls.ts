// TLS from the router to PostgreSQL, always with the server's certificate verified. The config's
// `ssl` names files (the CA, optionally a client certificate and key); they are read once, when the
// config is parsed, into one secure context that every connection to that node shares. What both
// drivers take (node-postgres for statements; postgres.js for probes, the catalog, the resharder)
// comes from connectionOptions() below, so no connection can be opened with a weaker check.
import { readFileSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import tls from "node:tls";
import { z } from "zod";

export interface PostgresTlsFiles { caFile: string; serverName?: string; certFile?: string; keyFile?: string }

/** The verified TLS settings of a connection: file paths (printable) and a secure context (not). */
export class PostgresTls {
  readonly caFile: string;
  readonly serverName?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
  // Private (#): a parsed config must parse again (main.ts does, with the CLI flags over it), and
  // the strict schema would refuse any other own key.
  readonly #context: tls.SecureContext;

  constructor(files: PostgresTlsFiles, context: tls.SecureContext) {
    this.caFile = files.caFile;
    if (files.serverName !== undefined) this.serverName = files.serverName;
    if (files.certFile !== undefined) this.certFile = files.certFile;
    if (files.keyFile !== undefined) this.keyFile = files.keyFile;
    this.#context = context;
  }

  /** The `ssl` option of node-postgres and of postgres.js for a connection to `host`. */
  connectionOptions(host: string): tls.ConnectionOptions {
    const name = this.serverName ?? host;
    return {
      secureContext: this.#context,
      rejectUnauthorized: true,
      // SNI names a host, never an address (RFC 6066; Node warns).
      ...(isIP(name) ? {} : { servername: name }),
      // Checked against `name` here: node-postgres 8.23 overwrites `servername` with the host when
      // the host is a DNS name, which would check the host instead of serverName.
      checkServerIdentity: (_host, cert) => tls.checkServerIdentity(name, cert),
    };
  }

  /** The same CA and client certificate for nodes of other names (registered shards): each is checked against its own host. */
  withoutServerName(): PostgresTls {
    return new PostgresTls({ caFile: this.caFile, certFile: this.certFile, keyFile: this.keyFile }, this.#context);
  }
}

/** `ssl` for either driver: verified TLS, or none (`false`, so PGSSLMODE or PGSSL cannot turn on an unverified one). */
export function postgresSsl(config: PostgresTls | undefined, host: string): tls.ConnectionOptions | false {
  return config ? config.connectionOptions(host) : false;
}

/** Why a libpq-style value (a string or a boolean) is refused, with what to write instead. */
function refusal(input: unknown): string | undefined {
  if (typeof input !== "string" && typeof input !== "boolean") return undefined;
  const why = input === "require" || input === "prefer" || input === "allow"
    ? `postgres.js turns ssl "${input}" into rejectUnauthorized: false: the server's certificate is never checked, ` +
      "so anyone between the router and PostgreSQL can pose as the server and read or change the traffic, passwords included"
    : "TLS to PostgreSQL is written as an object here, and it always verifies the server's certificate";
  return `${JSON.stringify(input)} is refused: ${why}. Write { "caFile": "/path/to/ca.pem" } (the CA that signed the ` +
    `server's certificate; add "serverName" when the certificate does not name the host, "certFile" and "keyFile" ` +
    "for a client certificate), or leave ssl out for a connection without TLS";
}

function schema<S extends z.ZodRawShape>(shape: S) {
  return z.object(shape, { error: (issue) => (issue.code === "invalid_type" ? refusal(issue.input) : undefined) }).strict();
}

const file = z.string().min(1);
const files = {
  caFile: file,
  /** The name the server's certificate must carry (a DNS name or an IP address); default: the host. */
  serverName: z.string().min(1).optional(),
  certFile: file.optional(),
  keyFile: file.optional(),
};

/** A node's or the catalog's `ssl`. */
export const PostgresTlsSchema = schema(files).superRefine(bothOrNeither).transform(load);

/** shardLogin's `ssl`: for nodes of many names, so no serverName (each node is checked against its host). */
export const SharedPostgresTlsSchema = schema({ caFile: files.caFile, certFile: files.certFile, keyFile: files.keyFile })
  .superRefine(bothOrNeither).transform(load);

function bothOrNeither(f: { certFile?: string; keyFile?: string }, ctx: z.RefinementCtx): void {
  if ((f.certFile === undefined) !== (f.keyFile === undefined)) {
    ctx.addIssue({ code: "custom", path: [f.certFile === undefined ? "certFile" : "keyFile"], message: "a client certificate needs both certFile and keyFile" });
  }
}

/** Reads the files (once, here) and checks they make a usable context; problems name the field, never a file's content. */
function load(f: PostgresTlsFiles, ctx: z.RefinementCtx): PostgresTls {
  const read = (field: "caFile" | "certFile" | "keyFile", path: string): Buffer | undefined => {
    try {
      return readFileSync(path);
    } catch (err) {
      ctx.addIssue({ code: "custom", path: [field], message: `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? "error"}` });
      return undefined;
    }
  };
  const ca = read("caFile", f.caFile);
  const cert = f.certFile === undefined ? undefined : read("certFile", f.certFile);
  const key = f.keyFile === undefined ? undefined : read("keyFile", f.keyFile);
  if (!ca || (f.certFile !== undefined && !cert) || (f.keyFile !== undefined && !key)) return z.NEVER;
  try {
    new X509Certificate(ca); // a CA file without a certificate would make every connection fail later
  } catch {
    ctx.addIssue({ code: "custom", path: ["caFile"], message: `${f.caFile} holds no PEM certificate` });
    return z.NEVER;
  }
  try {
    return new PostgresTls(f, tls.createSecureContext({ ca, cert, key }));
  } catch (err) {
    // OpenSSL's reason (e.g. "key values mismatch", "bad decrypt") names no key material.
    const why = (err as Error).message;
    ctx.addIssue({ code: "custom", path: cert ? ["certFile"] : ["caFile"], message: `cannot use ${cert ? `${f.certFile} with ${f.keyFile}` : f.caFile}: ${why}` });
    return z.NEVER;
  }
}

/**
 * When a connection failed for TLS (the server's certificate refused, no TLS on the server, a
 * handshake refused), what went wrong, for an operator; undefined for any other failure.
 */
export function tlsFailure(err: unknown): string | undefined {
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e?.code === "string" ? e.code : "";
  const message = typeof e?.message === "string" ? e.message : "";
  if (/^ERR_(TLS|SSL)_/.test(code) || /CERT|ISSUER|SIGNATURE|INVALID_CA|PATH_LENGTH|HOSTNAME_MISMATCH|INVALID_PURPOSE/.test(code)) {
    return `${message} (${code})`;
  }
  // node-postgres' own words when the server answers the SSL request with "N".
  if (message === "The server does not support SSL connections") return "the server does not accept TLS connections";
  return undefined;
}
