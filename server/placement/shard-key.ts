// What counts as a shard key, checked once at the front door of every strategy.
import { Code, ConnectError } from "@connectrpc/connect";

// In a `u` regex a surrogate class matches only *unpaired* surrogates (a pair is one code point).
// A lone surrogate has no UTF-8 encoding: TextEncoder and Buffer would silently turn it into U+FFFD,
// so "\uD800" and "\uFFFD" would hash alike and land on the same shard. Refuse it instead.
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/**
 * Throws InvalidArgument unless `key` is a usable shard key: a non-empty, well-formed Unicode string.
 * (An integer key is its decimal text, e.g. "42" or "-7".)
 */
export function assertShardKey(key: string): void {
  if (typeof key !== "string" || key.length === 0) {
    throw new ConnectError("shard key must not be empty", Code.InvalidArgument);
  }
  const bad = LONE_SURROGATE.exec(key);
  if (bad) {
    throw new ConnectError(
      `shard key is not valid Unicode: unpaired surrogate U+${bad[0].charCodeAt(0).toString(16).toUpperCase()} at index ${bad.index}`,
      Code.InvalidArgument,
    );
  }
}

/** A key as shown inside an error message: quoted, and cut short so a huge key can't flood a log. */
export function quoteKey(key: string): string {
  const shown = key.length > 80 ? `${key.slice(0, 80)}…` : key;
  return `'${shown}'`;
}
