// Bearer JWTs, verified with jose against keys read from local files (nothing is fetched over the
// network): algorithms pinned to the configured asymmetric ones, issuer and audience checked, exp
// and sub required, nbf honoured. Any failure is a refusal with jose's reason, never the token.
import { createPublicKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { createLocalJWKSet, errors, type JWTVerifyGetKey, jwtVerify } from "jose";
import { ConfigError } from "../config/config.js";
import type { AuthConfig } from "./auth-config.js";

type JwtConfig = NonNullable<AuthConfig["jwt"]>;

export interface VerifiedToken { subject: string; expiresAtMs: number }

export class TokenRefused extends Error {}

export class JwtVerifier {
  private constructor(private readonly config: JwtConfig, private readonly key: KeyObject | JWTVerifyGetKey) {}

  /** Reads the key file(s); a file that cannot be read or parsed fails here, at start or reload. */
  static load(config: JwtConfig): JwtVerifier {
    if (config.jwksFile) {
      let jwks: unknown;
      try {
        jwks = JSON.parse(readFileSync(config.jwksFile, "utf8"));
      } catch (err) {
        throw new ConfigError(`auth.jwt.jwksFile ${config.jwksFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      try {
        return new JwtVerifier(config, createLocalJWKSet(jwks as never));
      } catch (err) {
        throw new ConfigError(`auth.jwt.jwksFile ${config.jwksFile} is not a JWK set: ${(err as Error).message}`);
      }
    }
    try {
      return new JwtVerifier(config, createPublicKey(readFileSync(config.publicKeyFile!, "utf8")));
    } catch (err) {
      throw new ConfigError(`auth.jwt.publicKeyFile ${config.publicKeyFile}: ${(err as NodeJS.ErrnoException).code ?? "not a PEM public key or certificate"}`);
    }
  }

  async verify(token: string): Promise<VerifiedToken> {
    try {
      const { payload } = await jwtVerify(token, this.key as never, {
        algorithms: [...this.config.algorithms],
        issuer: this.config.issuer,
        audience: this.config.audience,
        requiredClaims: ["exp", "sub"],
        clockTolerance: this.config.clockToleranceSeconds,
      });
      return { subject: payload.sub!, expiresAtMs: payload.exp! * 1000 };
    } catch (err) {
      throw new TokenRefused(reasonOf(err));
    }
  }
}

/** jose's reasons name the claim or the check, never the token's content. */
function reasonOf(err: unknown): string {
  if (err instanceof errors.JWTExpired) return "it has expired";
  if (err instanceof errors.JWTClaimValidationFailed) return `claim "${err.claim}" ${err.reason === "missing" ? "is missing" : "is not valid"} (${err.message})`;
  if (err instanceof errors.JOSEAlgNotAllowed) return "its algorithm is not one this router accepts";
  if (err instanceof errors.JWSSignatureVerificationFailed) return "its signature does not verify";
  if (err instanceof errors.JWKSNoMatchingKey) return "no configured key matches its kid and algorithm";
  if (err instanceof errors.JWKSMultipleMatchingKeys) return "several configured keys match it";
  if (err instanceof errors.JOSEError) return `it is not a valid JWT (${err.code})`;
  return "it is not a valid JWT";
}
