// The `auth` section of the router's config: who may call (identities and how each proves it), what
// each may call, and the Postgres login each one's SQL runs as. Deny by default: a caller that matches
// no identity is refused, and there is no fallback identity. Reloaded on SIGHUP (see authenticator.ts).
import { z } from "zod";

/** Asymmetric algorithms only: a shared-secret (HS*) key could be confused with a public key. */
export const jwtAlgorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"] as const;

const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, "use letters, digits, '_', '.', '-'");

export const LoginSchema = z.object({
  user: z.string().min(1),
  password: z.string().optional(),
  /** Name of an environment variable holding the password. */
  passwordEnv: z.string().optional(),
}).strict();

const IdentitySchema = z.object({
  name,
  /** JWT `sub` values that are this identity. */
  jwtSubjects: z.array(z.string().min(1)).default([]),
  /** API keys, as the SHA-256 (hex) of the key: the keys themselves are never stored. */
  apiKeys: z.array(z.object({ id: name, sha256: z.string().regex(/^[0-9a-f]{64}$/, "64 lowercase hex digits (sha256 of the key)") }).strict()).default([]),
  /** Client certificate subject alternative names that are this identity, matched exactly: "DNS:orders.internal", "URI:spiffe://…". */
  certificateSans: z.array(z.string().regex(/^(DNS|URI|email|IP Address):\S+$/, 'write it as Node prints it: "DNS:name", "URI:spiffe://…", "email:…", "IP Address:…"')).default([]),
  /**
   * The Postgres login this identity's SQL runs as, so Postgres enforces its grants. "router" is the
   * router's own login (the nodes' configured one): for a trusted service, and only when written here.
   */
  login: z.union([z.literal("router"), LoginSchema]),
  /** A different login on some shards (by shard name). */
  shardLogins: z.record(z.string(), LoginSchema).default({}),
  /** What it may call: "RouterService/Transfer", "RouterService/*", "AdminService/*", "*". */
  rpcs: z.array(z.string().regex(/^(\*|[A-Za-z]+\/(\*|[A-Za-z]+))$/, 'write "Service/Method", "Service/*" or "*"')).min(1),
  /** Calls in flight at once (each a statement, a transaction or a scatter); beyond it: resource_exhausted. */
  maxConcurrent: z.number().int().min(1).max(100_000).default(64),
}).strict();

export const AuthConfigSchema = z.object({
  jwt: z.object({
    issuer: z.string().min(1),
    audience: z.string().min(1),
    algorithms: z.array(z.enum(jwtAlgorithms)).min(1),
    /** A JWKS file (keys picked by `kid`); read at start and on reload, never fetched over the network. */
    jwksFile: z.string().min(1).optional(),
    /** Or one PEM public key (SPKI) or certificate. */
    publicKeyFile: z.string().min(1).optional(),
    clockToleranceSeconds: z.number().int().min(0).max(300).default(5),
  }).strict().refine((j) => (j.jwksFile === undefined) !== (j.publicKeyFile === undefined), "give exactly one of jwksFile and publicKeyFile").optional(),
  /** Services callable without credentials. */
  open: z.object({ health: z.boolean().default(true), reflection: z.boolean().default(true) }).strict().prefault({}),
  identities: z.array(IdentitySchema).min(1),
}).strict();

export type AuthConfig = z.infer<typeof AuthConfigSchema>;
export type IdentityConfig = AuthConfig["identities"][number];
export type LoginConfig = z.infer<typeof LoginSchema>;

/** Problems a schema cannot see: duplicates, and credentials that would name two identities. */
export function authProblems(auth: AuthConfig): string[] {
  const problems: string[] = [];
  const names = new Set<string>();
  const owners = new Map<string, string>();
  const claim = (what: string, identity: string, at: string) => {
    const other = owners.get(what);
    if (other !== undefined && other !== identity) problems.push(`${at}: also given to identity "${other}"`);
    else if (other === identity) problems.push(`${at}: listed twice`);
    owners.set(what, identity);
  };
  auth.identities.forEach((id, i) => {
    const at = `auth.identities[${i}]`;
    if (names.has(id.name)) problems.push(`${at}.name: duplicate identity "${id.name}"`);
    names.add(id.name);
    id.jwtSubjects.forEach((s, j) => claim(`sub:${s}`, id.name, `${at}.jwtSubjects[${j}]`));
    id.apiKeys.forEach((k, j) => claim(`key:${k.sha256}`, id.name, `${at}.apiKeys[${j}]`));
    id.certificateSans.forEach((s, j) => claim(`san:${s}`, id.name, `${at}.certificateSans[${j}]`));
    if (id.jwtSubjects.length && !auth.jwt) problems.push(`${at}.jwtSubjects: there is no auth.jwt to verify tokens with`);
    if (!id.jwtSubjects.length && !id.apiKeys.length && !id.certificateSans.length) problems.push(`${at}: no credential (jwtSubjects, apiKeys or certificateSans) can prove this identity`);
    const logins = [...(id.login === "router" ? [] : [[`${at}.login`, id.login] as const]), ...Object.entries(id.shardLogins).map(([s, l]) => [`${at}.shardLogins.${s}`, l] as const)];
    for (const [where, login] of logins) {
      if (login.passwordEnv && process.env[login.passwordEnv] === undefined) problems.push(`${where}.passwordEnv: environment variable ${login.passwordEnv} is not set`);
    }
  });
  return problems;
}
