#!/usr/bin/env node
// `shardrouter`, the command line of @shardrouter/sdk (its package.json "bin"; in this repository
// `npm run shardrouter -- …` runs this source through tsx). Nothing imports this file: the library
// entries (index.ts, node.ts) never load the CLI, and Deno and browser graphs never see it.
//
//   shardrouter [global flags] COMMAND [ARGS] [flags]
//
// Commands: route, topology, execute, query, all, transfer, explain, ids (RouterService, on the SDK's
// client), and the operator's shard add, reshard add|drain|status|cutover|cancel (AdminService). Flags are read with
// node:util parseArgs: a dozen commands do not pay for a CLI framework (and its weight in every
// install of the SDK). Exit status: 0 done, 1 refused or failed (one line on stderr), 2 usage.
import { parseArgs } from "node:util";
import { adminCommands } from "./admin-commands.ts";
import { type Command, type Context, UsageError, type Values, clients, connectionOf, errorLine, globalHelp, globalOptions } from "./command.ts";
import { styleFor } from "./output.ts";
import { routerCommands } from "./router-commands.ts";

const commands = [...routerCommands, ...adminCommands];
/** First words that need a second one ("reshard" → add, drain …). */
const groups = new Set(commands.filter((c) => c.name.includes(" ")).map((c) => c.name.split(" ")[0]));
const globalValued = new Set(["--url", "--token", "--timeout"]);

const jsonHelp = `--json prints one JSON document: 64-bit integers (int8 cells, balances, versions) and numeric are
strings ("1000", "12.50"), so nothing is rounded; NaN and ±Infinity are strings; bytea is "\\\\x…" hex;
json/jsonb cells are the documents; timestamps are RFC 3339 text with microseconds. Admin commands
print protobuf's JSON mapping of the answer (the same conventions, enums by name).`;

const exitHelp = `environment: SHARDROUTER_URL, SHARDROUTER_TOKEN (the flags --url and --token override them).
exit status: 0 done; 1 the router or Postgres refused or failed (one line on stderr: the message, the
Connect code, the SQLSTATE when there is one); 2 a mistake in the command line (with its usage).`;

const line = (c: Command) => `shardrouter ${c.name}${c.args ? ` ${c.args}` : ""}`;

function generalUsage(): string {
  const list = commands.map((c) => `  ${line(c).slice("shardrouter ".length)}\n      ${c.summary}`).join("\n");
  return `usage: shardrouter [global flags] COMMAND [ARGS] [flags]\n\ncommands:\n${list}\n\n${globalHelp}\n\n${jsonHelp}\n\n${exitHelp}\n`;
}

function groupUsage(group: string): string {
  const members = commands.filter((c) => c.name.startsWith(`${group} `));
  return `usage: ${members.map((c) => `${line(c)}\n         ${c.summary}`).join("\n       ")}\n(shardrouter ${group} VERB --help for more)\n`;
}

/** The usage line and the command's own flags; with `full`, the global flags too (--help). */
function commandUsage(c: Command, full: boolean): string {
  const more = full ? `\n${globalHelp}\n` : `(shardrouter ${c.name} --help for more)\n`;
  return `usage: ${line(c)}\n  ${c.summary}\n${c.help ? `${c.help}\n` : ""}${more}`;
}

/** The command's words, and the rest for parseArgs. Only global flags may come before the command. */
function split(argv: string[]): { words: string[]; rest: string[] } {
  const words: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const wanted = words.length === 0 || (words.length === 1 && (groups.has(words[0]) || words[0] === "help"));
    if (arg === "--" || !wanted) {
      rest.push(...argv.slice(i));
      break;
    }
    if (!arg.startsWith("-")) {
      words.push(arg);
      continue;
    }
    rest.push(arg);
    if (globalValued.has(arg) && i + 1 < argv.length) rest.push(argv[++i]);
  }
  return { words, rest };
}

async function main(argv: string[], env: Record<string, string | undefined>): Promise<number> {
  const stdout = (text: string) => void process.stdout.write(text);
  const stderr = (text: string) => void process.stderr.write(text);
  const { words, rest } = split(argv);
  const end = rest.indexOf("--");
  const flags = end < 0 ? rest : rest.slice(0, end); // after --, "-h" is a parameter
  const help = flags.includes("--help") || flags.includes("-h") || words[0] === "help";
  if (words[0] === "help") words.shift();
  const name = words.join(" ");
  const command = commands.find((c) => c.name === name);
  if (!command) {
    const group = groups.has(words[0]) ? words[0] : undefined;
    const usage = group ? groupUsage(group) : generalUsage();
    if (help) {
      stdout(usage);
      return 0;
    }
    const verbs = commands.filter((c) => c.name.startsWith(`${group} `)).map((c) => c.name.slice(`${group} `.length));
    const problem = group
      ? words.length > 1 ? `unknown command "${name}"` : `${group} needs one of: ${verbs.join(", ")}`
      : words.length ? `unknown command "${name}"` : "";
    stderr(`${problem ? `shardrouter: ${problem}\n` : ""}${usage}`);
    return 2;
  }
  if (help) {
    stdout(commandUsage(command, true));
    return 0;
  }
  let token: string | undefined;
  let conn: ReturnType<typeof clients> | undefined;
  try {
    let parsed: { values: Values; positionals: string[] };
    try {
      parsed = parseArgs({ args: rest, options: { ...globalOptions, ...command.options }, allowPositionals: true, strict: true }) as typeof parsed;
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    const connection = connectionOf(parsed.values, env);
    token = connection.token;
    conn = clients(connection);
    const ctx: Context = {
      values: parsed.values,
      positionals: parsed.positionals,
      json: !!parsed.values.json,
      style: styleFor(process.stdout, env),
      out: stdout,
      note: (l) => stderr(`${l}\n`),
      router: conn.router,
      admin: conn.admin,
    };
    return await command.run(ctx);
  } catch (err) {
    if (err instanceof UsageError) {
      stderr(`shardrouter: ${err.message}\n${commandUsage(command, false)}`);
      return 2;
    }
    stderr(`${errorLine(err, token)}\n`);
    return 1;
  } finally {
    conn?.close();
  }
}

// A reader that stops early (`shardrouter all … | head`) closes the pipe: that is no failure.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code !== "EPIPE") throw err;
  process.exit(process.exitCode ?? 0);
});
// exitCode rather than exit(): stdout is flushed, and the closed clients hold nothing open.
main(process.argv.slice(2), process.env).then((code) => {
  process.exitCode = code;
});
