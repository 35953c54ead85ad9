// uvu's `test`, made safe for errors that are not assertions. uvu 0.5 formats a failure by calling
// `err.details.split(...)`; a ConnectError's `details` is an array, so the formatter throws and uvu
// silently abandons the rest of the suite. Here such errors are re-thrown as plain Errors that say
// what happened (code, message, cause).
import { test as uvuTest } from "uvu";

type Handler = (ctx: Record<string, unknown>) => unknown;

function readable(fn: Handler): Handler {
  return async (ctx) => {
    try {
      await fn(ctx);
    } catch (err) {
      if (err instanceof Error && err.name.startsWith("Assertion")) throw err;
      const e = err as { name?: string; message?: string; code?: unknown; stack?: string };
      const plain = new Error(`${e?.name ?? "thrown"}${e?.code !== undefined ? ` (code ${String(e.code)})` : ""}: ${e?.message ?? String(err)}`);
      if (e?.stack) plain.stack = `${plain.message}\n${e.stack.split("\n").slice(1).join("\n")}`;
      throw plain;
    }
  };
}

export const test = new Proxy(uvuTest, {
  apply(target, thisArg, [name, fn]: [string, Handler]) {
    return Reflect.apply(target, thisArg, [name, readable(fn)]);
  },
});

/**
 * uvu 0.5 loses an exception thrown by a before/after hook (its runner returns from `finally`), so
 * the suite would just show 0 passed. Wrap hooks with this to print the cause; the runner still counts
 * the suite's tests as failed.
 */
export function hook(fn: () => Promise<void>): () => Promise<void> {
  return async () => {
    try {
      await fn();
    } catch (err) {
      console.error("suite hook failed:", err);
      throw err;
    }
  };
}
