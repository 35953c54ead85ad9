// Assertions for the ConnectErrors placement throws: the code a client sees, and a message a person
// can act on. (Not a test file: the runner only picks up *.test.ts.)
import { Code, ConnectError } from "@connectrpc/connect";
import * as assert from "uvu/assert";

function check(err: unknown, code: Code, messagePart: string): void {
  assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
  assert.is(Code[err.code], Code[code], `code for "${err.rawMessage}"`);
  assert.ok(err.rawMessage.includes(messagePart), `message "${err.rawMessage}" should contain "${messagePart}"`);
}

export function assertThrowsConnect(fn: () => unknown, code: Code, messagePart: string): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  assert.ok(thrown !== undefined, `expected ${Code[code]} ("${messagePart}"), but nothing was thrown`);
  check(thrown, code, messagePart);
}

/** Accepts a sync throw or a rejected promise, since `place` may be either. */
export async function assertRejectsConnect(fn: () => unknown, code: Code, messagePart: string): Promise<void> {
  let thrown: unknown;
  try {
    await fn();
  } catch (err) {
    thrown = err;
  }
  assert.ok(thrown !== undefined, `expected ${Code[code]} ("${messagePart}"), but it succeeded`);
  check(thrown, code, messagePart);
}
