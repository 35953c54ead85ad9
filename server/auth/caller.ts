// An authenticated caller: the identity a credential proved, what it may call, the Postgres login its
// SQL runs as on each shard, and its cap on calls in flight. Built from the auth config; rebuilt on
// reload (the in-flight counts live in the authenticator, so a reload never resets them).
import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { passwordOf } from "../config/config.js";
import type { Login } from "../shards/node-pool.js";
import type { IdentityConfig } from "./auth-config.js";

export class Caller {
  readonly identity: string;
  readonly maxConcurrent: number;
  /** Runs as the router's own login on the shards without a login of their own (login "router"). */
  readonly usesRouterLogin: boolean;
  private readonly login: Login | undefined;
  private readonly shardLogins: Map<string, Login>;
  /** "Service/Method", "Service/*" or "*" (Service: the short name, e.g. RouterService). */
  private readonly rights: Set<string>;

  constructor(config: IdentityConfig) {
    this.identity = config.name;
    this.maxConcurrent = config.maxConcurrent;
    this.usesRouterLogin = config.login === "router";
    this.login = config.login === "router" ? undefined : { user: config.login.user, password: passwordOf(config.login) };
    this.shardLogins = new Map(Object.entries(config.shardLogins).map(([shard, l]) => [shard, { user: l.user, password: passwordOf(l) }]));
    this.rights = new Set(config.rpcs);
  }

  /** The login for a shard's nodes; undefined: the router's own (an identity configured with login "router"). */
  loginFor = (shard: string): Login | undefined => this.shardLogins.get(shard) ?? this.login;

  /** Every login this identity uses (recovery settles transactions prepared under them). */
  get logins(): Login[] {
    return [...(this.login ? [this.login] : []), ...this.shardLogins.values()];
  }

  may(method: DescMethod): boolean {
    const service = method.parent.name;
    return this.rights.has("*") || this.rights.has(`${service}/*`) || this.rights.has(`${service}/${method.name}`);
  }

  /** PermissionDenied unless it may call `method`. */
  authorize(method: DescMethod): void {
    if (!this.may(method)) {
      throw new ConnectError(`identity "${this.identity}" may not call ${method.parent.typeName}/${method.name}`, Code.PermissionDenied);
    }
  }
}

/** Checks rights against the services the router serves, so a typo fails at start, not at the first call. */
export function rightsProblems(identities: IdentityConfig[], services: { name: string; methods: { name: string }[] }[]): string[] {
  const problems: string[] = [];
  identities.forEach((id, i) => id.rpcs.forEach((right, j) => {
    if (right === "*") return;
    const [service, method] = right.split("/");
    const svc = services.find((s) => s.name === service);
    if (!svc) problems.push(`auth.identities[${i}].rpcs[${j}]: no service "${service}" (there are ${services.map((s) => s.name).join(", ")})`);
    else if (method !== "*" && !svc.methods.some((m) => m.name === method)) problems.push(`auth.identities[${i}].rpcs[${j}]: ${service} has no method "${method}"`);
  }));
  return problems;
}
