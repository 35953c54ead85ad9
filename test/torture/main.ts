// The torture command (issue 12): runs the bank under random faults, run after run, and checks the
// invariants after each. Not part of `npm test`: it is long and random by design.
//   npm run torture -- [--runs N] [--seed S] [--transfers N] [--clients N]
// Each run prints its seed; `--seed S --runs 1` replays that run's plan (faults, their order and
// progress points, every client's transfers). Run i of `--seed S --runs N` uses seed S + i.
// The closing line is "N passed, N failed" (what CI reads); the exit code is 1 if any run failed.
import { parseArgs } from "node:util";
import { newSeed } from "./random.js";
import { tortureRun } from "./run.js";
import { liveSupervisors } from "./supervisor.js";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "1" },
    seed: { type: "string" },
    transfers: { type: "string", default: "60" },
    clients: { type: "string", default: "8" },
  },
});

function positive(name: string, text: string | undefined, allowZero = false): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) {
    console.error(`--${name}: "${text}" is not a ${allowZero ? "non-negative" : "positive"} integer`);
    process.exit(2);
  }
  return n;
}

const runs = positive("runs", values.runs);
const transfersPerClient = positive("transfers", values.transfers);
const clients = positive("clients", values.clients);
const firstSeed = values.seed === undefined ? newSeed() : positive("seed", values.seed, true);

// Ctrl-C or a SIGTERM: no router process outlives the command (the postgres servers die with it).
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    for (const s of liveSupervisors) s.killNow();
    process.exit(130);
  });
}

console.log(`torture: ${runs} run(s), ${clients} clients × ${transfersPerClient} transfers, first seed ${firstSeed}`);
let passed = 0;
let failed = 0;
const failures: string[] = [];
for (let i = 0; i < runs; i++) {
  const seed = (firstSeed + i) >>> 0;
  console.log(`\n== run ${i + 1}/${runs}, seed ${seed} (replay: npm run torture -- --seed ${seed} --runs 1 --clients ${clients} --transfers ${transfersPerClient})`);
  const result = await tortureRun({ seed, clients, transfersPerClient, log: (line) => console.log(line) });
  console.log(`== run ${i + 1}/${runs}, seed ${seed}: ${result.passed ? "passed" : "FAILED"} in ${result.seconds.toFixed(1)} s`);
  if (result.passed) passed++;
  else {
    failed++;
    failures.push(`seed ${seed}: ${result.invariants.filter((v) => v.problems.length).map((v) => v.name).join("; ")}`);
  }
}
if (failures.length) console.log(`\nFailed runs:\n  ${failures.join("\n  ")}`);
console.log(`\n${passed} passed, ${failed} failed`);
// Exit now: a failed run may have left calls or timers pending (that is what it reports), and they
// must not keep the command alive.
process.exit(failed > 0 ? 1 : 0);
