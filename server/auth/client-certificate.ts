// mTLS identities: the subject alternative names of a client certificate the TLS layer verified
// against the configured client CA, matched exactly (never by substring or prefix) to an identity's
// certificateSans. Node prints SANs as `DNS:a, URI:b`, quoting a value that holds a comma or quote
// as a JSON string (since 17.3.1, CVE-2021-44532), so the list is parsed, not split on commas.
import type { TLSSocket } from "node:tls";

export type CertificateCheck =
  | { ok: true; sans: string[] }
  | { ok: false; reason: string }
  | undefined; // no TLS or no certificate

export function clientCertificate(socket: unknown): CertificateCheck {
  const tls = socket as Partial<TLSSocket> | undefined;
  let cert: ReturnType<TLSSocket["getPeerCertificate"]> | undefined;
  try {
    if (!tls || typeof tls.getPeerCertificate !== "function") return undefined;
    cert = tls.getPeerCertificate();
  } catch {
    return undefined; // an HTTP/2 session already gone: no certificate to trust
  }
  if (!cert || Object.keys(cert).length === 0) return undefined;
  if (!tls.authorized) return { ok: false, reason: `the client certificate was refused (${tls.authorizationError ?? "not verified"})` };
  return { ok: true, sans: subjectAltNames(cert.subjectaltname) };
}

/** `DNS:a, DNS:"b,c", URI:spiffe://x` → ["DNS:a", "DNS:b,c", "URI:spiffe://x"]. */
export function subjectAltNames(text: string | undefined): string[] {
  const out: string[] = [];
  if (!text) return out;
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(":", i);
    if (colon < 0) break;
    const type = text.slice(i, colon);
    let j = colon + 1;
    let value: string;
    if (text[j] === '"') {
      let k = j + 1;
      while (k < text.length && text[k] !== '"') k += text[k] === "\\" ? 2 : 1;
      try {
        value = JSON.parse(text.slice(j, k + 1));
      } catch {
        return out; // malformed: what came before stands, nothing after is trusted
      }
      j = k + 1;
    } else {
      const end = text.indexOf(", ", j);
      j = end < 0 ? text.length : end;
      value = text.slice(colon + 1, j);
    }
    out.push(`${type}:${value}`);
    if (text.startsWith(", ", j)) j += 2;
    else if (j < text.length) break;
    i = j;
  }
  return out;
}
