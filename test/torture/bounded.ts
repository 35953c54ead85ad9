// Every wait in a torture run has a bound, and a failure names what it waited for: a run must end
// and say why, never hang. (The deliberate pause durations of faults are the only sleeps.)

export class TimedOut extends Error {}

/** `p`, or a TimedOut naming `what` after `ms`. The losing promise is left to settle on its own. */
export function within<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimedOut(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * within(), and if it times out, `cleanUp` of what `started` still delivers after all: a cluster or
 * router that comes up late must not outlive the run that gave up on it.
 */
export async function withinOrCleanUp<T>(what: string, ms: number, started: Promise<T>, cleanUp: (value: T) => Promise<unknown>): Promise<T> {
  try {
    return await within(what, ms, started);
  } catch (err) {
    if (err instanceof TimedOut) started.then((value) => cleanUp(value)).catch(() => {});
    throw err;
  }
}

/**
 * Polls `check` until it returns true, or fails after `ms` with `what` and the last thing `check`
 * reported (a string: what is still wrong). A check that itself hangs counts against the same bound.
 */
export async function waitUntil(what: string, ms: number, check: () => Promise<true | string>): Promise<void> {
  const deadline = Date.now() + ms;
  let last = "nothing checked yet";
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    try {
      const outcome = await within(`one check of ${what}`, left, check());
      if (outcome === true) return;
      last = outcome;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, 100)); // the polling interval of a wait on a condition
  }
  throw new TimedOut(`timed out after ${ms} ms waiting for ${what}; last seen: ${last}`);
}

/** The deliberate length of a fault (a pause, a node's down time): the one kind of sleep allowed here. */
export function faultDuration(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
