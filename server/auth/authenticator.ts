// Who is calling: the one place a request's credentials become a Caller, or an `unauthenticated`
// refusal. Deny by default: a bearer token (a JWT, or an API key), else a client certificate the TLS
// layer verified; anything else is refused, and identity headers a client sets (x-user, x-role …)
// are never read. Then the caller's rights (permission_denied) and its cap on calls in flight
// (resource_exhausted, counted per identity, so one noisy identity never takes another's share).
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ConfigError } from "../config/config.js";
import { ApiKeys, sha256 } from "./api-keys.js";
import { type AuthConfig, authProblems } from "./auth-config.js";
import { Caller, rightsProblems } from "./caller.js";
import { clientCertificate } from "./client-certificate.js";
import { JwtVerifier, TokenRefused } from "./jwt-verifier.js";
import type { Login } from "../shards/node-pool.js";

/** A call let in: its caller, and the slot it holds until `release`. */
export interface Admitted { readonly caller: Caller; release(): void }

const reflectionServices = new Set(["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]);
const healthService = "grpc.health.v1.Health";
/** Verified tokens kept (by their SHA-256) until they expire; beyond this many, the oldest go. */
const tokenCacheSize = 10_000;

interface State {
  open: Set<string>;
  jwt: JwtVerifier | undefined;
  bySubject: Map<string, Caller>;
  bySan: Map<string, Caller>;
  keys: ApiKeys<Caller>;
  identities: Caller[];
}

export class Authenticator {
  private state: State;
  private readonly tokens = new Map<string, { caller: Caller; expiresAtMs: number }>();
  private readonly inFlight = new Map<string, number>();
  /**
   * Every login an identity has had since this router started, by user: a reload that revokes an
   * identity must not strand its prepared transactions, which only that role may finish.
   */
  private readonly everLogins = new Map<string, Login>();

  private constructor(private readonly services: DescService[], config: AuthConfig) {
    this.state = this.build(config);
  }

  /** Fails with every problem of the config named (and a key file it cannot read). */
  static create(config: AuthConfig, services: DescService[]): Authenticator {
    return new Authenticator(services, config);
  }

  /**
   * Takes a new auth config (SIGHUP): keys, identities and rights change for every call from now on;
   * verified tokens are verified again. A config that fails leaves the one in force untouched.
   */
  reload(config: AuthConfig): void {
    const before = this.logins;
    this.state = this.build(config);
    this.tokens.clear();
    for (const login of before) this.everLogins.set(login.user, login);
  }

  /** Every login an identity's SQL runs as now. */
  get logins(): Login[] {
    return this.state.identities.flatMap((c) => c.logins);
  }

  /** The login of `role` for recovery: an identity's now, or one it had before a reload revoked it. */
  loginOfRole(role: string): Login | undefined {
    return this.logins.find((l) => l.user === role) ?? this.everLogins.get(role);
  }

  /**
   * Whether two Postgres roles are logins of one identity (its login on one shard, and on another);
   * `routerUser` is the router's own, which an identity with login "router" uses where it has no other.
   */
  sameCaller(a: string, b: string, routerUser: string): boolean {
    return this.state.identities.some((c) => {
      const users = [...c.logins.map((l) => l.user), ...(c.usesRouterLogin ? [routerUser] : [])];
      return users.includes(a) && users.includes(b);
    });
  }

  private build(config: AuthConfig): State {
    const problems = [...authProblems(config), ...rightsProblems(config.identities, this.services)];
    if (problems.length) throw new ConfigError(`auth config is invalid:\n${problems.map((p) => `  ${p}`).join("\n")}`);
    const identities = config.identities.map((i) => new Caller(i));
    const open = new Set<string>();
    if (config.open.health) open.add(healthService);
    if (config.open.reflection) for (const s of reflectionServices) open.add(s);
    return {
      open,
      jwt: config.jwt && JwtVerifier.load(config.jwt),
      bySubject: new Map(identities.flatMap((c, i) => config.identities[i].jwtSubjects.map((s) => [s, c] as const))),
      bySan: new Map(identities.flatMap((c, i) => config.identities[i].certificateSans.map((s) => [sanKey(s), c] as const))),
      keys: new ApiKeys(identities.flatMap((c, i) => config.identities[i].apiKeys.map((k) => ({ sha256: k.sha256, owner: c })))),
      identities,
    };
  }

  /**
   * Lets a call in, or refuses it: undefined for a service the config leaves open (health,
   * reflection), else the caller and its slot. `socket` is the connection's (a TLSSocket under mTLS).
   */
  async admit(method: DescMethod, authorization: string | undefined, socket: unknown): Promise<Admitted | undefined> {
    const state = this.state;
    if (state.open.has(method.parent.typeName)) return undefined;
    const caller = await this.identify(state, authorization, socket);
    caller.authorize(method);
    return this.take(caller);
  }

  private async identify(state: State, authorization: string | undefined, socket: unknown): Promise<Caller> {
    if (authorization !== undefined) {
      const match = /^Bearer +([!-~]+) *$/i.exec(authorization);
      if (!match) throw unauthenticated('the authorization header must be "Bearer <token>" (a JWT or an API key)');
      const token = match[1];
      return token.split(".").length === 3 ? this.fromJwt(state, token) : this.fromApiKey(state, token);
    }
    const cert = clientCertificate(socket);
    if (cert === undefined) throw unauthenticated("this router needs credentials: send \"authorization: Bearer <token>\" (a JWT or an API key) or a client certificate");
    if (!cert.ok) throw unauthenticated(cert.reason);
    const named = new Set(cert.sans.map((san) => state.bySan.get(sanKey(san))).filter((c): c is Caller => c !== undefined));
    if (named.size === 1) return [...named][0];
    if (named.size > 1) throw unauthenticated(`the client certificate names ${named.size} identities (${[...named].map((c) => c.identity).join(", ")}): it proves none of them`);
    throw unauthenticated(`the client certificate names no identity on this router (its subject alternative names: ${cert.sans.join(", ") || "none"})`);
  }

  private fromApiKey(state: State, key: string): Caller {
    const caller = state.keys.find(key);
    if (!caller) throw unauthenticated("the API key is not valid (unknown or revoked)");
    return caller;
  }

  private async fromJwt(state: State, token: string): Promise<Caller> {
    const digest = sha256(token).toString("base64");
    const cached = this.tokens.get(digest);
    if (cached && cached.expiresAtMs > Date.now()) return cached.caller;
    if (cached) this.tokens.delete(digest);
    if (!state.jwt) throw unauthenticated("this router does not accept JWTs (no auth.jwt is configured)");
    let subject: string;
    let expiresAtMs: number;
    try {
      ({ subject, expiresAtMs } = await state.jwt.verify(token));
    } catch (err) {
      if (err instanceof TokenRefused) throw unauthenticated(`the bearer token was refused: ${err.message}`);
      throw unauthenticated("the bearer token was refused");
    }
    const caller = state.bySubject.get(subject);
    if (!caller) throw unauthenticated("the bearer token's subject names no identity on this router");
    if (this.state === state) {
      if (this.tokens.size >= tokenCacheSize) this.tokens.delete(this.tokens.keys().next().value!);
      this.tokens.set(digest, { caller, expiresAtMs });
    }
    return caller;
  }

  /** One of the caller's slots, or resource_exhausted at its cap. */
  private take(caller: Caller): Admitted {
    const used = this.inFlight.get(caller.identity) ?? 0;
    if (used >= caller.maxConcurrent) {
      throw new ConnectError(`identity "${caller.identity}" has ${used} calls in flight, its limit (maxConcurrent); retry later`, Code.ResourceExhausted);
    }
    this.inFlight.set(caller.identity, used + 1);
    let released = false;
    return {
      caller,
      release: () => {
        if (released) return;
        released = true;
        this.inFlight.set(caller.identity, (this.inFlight.get(caller.identity) ?? 1) - 1);
      },
    };
  }
}

/** DNS names compare without regard to case (RFC 4343); every other kind exactly. */
function sanKey(san: string): string {
  return san.startsWith("DNS:") ? san.toLowerCase() : san;
}

function unauthenticated(message: string): ConnectError {
  return new ConnectError(message, Code.Unauthenticated);
}
