// Pooled connections are shared by every caller, so a statement must not leave session state behind
// (an open transaction, a SET, a LISTEN, a prepared statement, a temp table, a session advisory lock)
// that the next caller would inherit. This guard is lexical and deliberately conservative: it reads
// the statement's keywords outside comments, string literals, quoted identifiers and dollar quotes.
import { Code, ConnectError } from "@connectrpc/connect";

const forbiddenLeading = new Map<string, string>([
  ["BEGIN", "transactions"], ["START", "transactions"], ["COMMIT", "transactions"], ["END", "transactions"],
  ["ROLLBACK", "transactions"], ["ABORT", "transactions"], ["SAVEPOINT", "transactions"], ["RELEASE", "transactions"],
  ["PREPARE", "prepared statements"], ["EXECUTE", "prepared statements"], ["DEALLOCATE", "prepared statements"],
  ["SET", "session settings"], ["RESET", "session settings"], ["DISCARD", "session settings"], ["LOAD", "session settings"],
  ["LISTEN", "notifications"], ["UNLISTEN", "notifications"],
  ["DECLARE", "cursors"], ["FETCH", "cursors"], ["MOVE", "cursors"], ["CLOSE", "cursors"],
  ["COPY", "COPY"],
]);

const forbiddenAnywhere = new Map<string, string>([
  ["PG_TEMP", "temporary tables"],
  ["SET_CONFIG", "session settings"],
  ["PG_ADVISORY_LOCK", "session advisory locks"], ["PG_ADVISORY_LOCK_SHARED", "session advisory locks"],
  ["PG_TRY_ADVISORY_LOCK", "session advisory locks"], ["PG_TRY_ADVISORY_LOCK_SHARED", "session advisory locks"],
  ["DBLINK_CONNECT", "session connections"], ["DBLINK_CONNECT_U", "session connections"],
]);

const tempIntroducers = new Set(["CREATE", "GLOBAL", "LOCAL", "INTO"]);

/** The statement's bare words, upper-cased, outside literals and comments. Throws on a second statement. */
export function keywords(sql: string): string[] {
  const words: string[] = [];
  let i = 0;
  let ended = false; // a ';' was seen: only whitespace and comments may follow
  const n = sql.length;
  while (i < n) {
    const c = sql[i];
    if (c === "-" && sql[i + 1] === "-") { i = skipLine(sql, i); continue; }
    if (c === "/" && sql[i + 1] === "*") { i = skipBlockComment(sql, i); continue; }
    if (c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\f") { i++; continue; }
    if (ended) throw new ConnectError("one statement per call: remove everything after the ';'", Code.InvalidArgument);
    if (c === ";") { ended = true; i++; continue; }
    if (c === "'") { i = skipQuoted(sql, i, "'", false); continue; }
    if (c === '"') { i = skipQuoted(sql, i, '"', false); continue; }
    if ((c === "E" || c === "e") && sql[i + 1] === "'") { i = skipQuoted(sql, i + 1, "'", true); continue; }
    if (c === "$") {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i, i + 64));
      if (tag) {
        const close = sql.indexOf(tag[0], i + tag[0].length);
        i = close === -1 ? n : close + tag[0].length;
        continue;
      }
    }
    if (/[A-Za-z_]/.test(c)) {
      let j = i + 1;
      while (j < n && /[A-Za-z0-9_$]/.test(sql[j])) j++;
      words.push(sql.slice(i, j).toUpperCase());
      i = j;
      continue;
    }
    i++;
  }
  return words;
}

/** Throws INVALID_ARGUMENT for an empty statement, several statements, or one that leaves session state. */
/**
 * Statements a service sends are few and repeated: the texts that passed are remembered (bounded,
 * cleared when full) so the hot path scans each text once, not once per call.
 */
const passed = new Set<string>();
const maxRemembered = 4096;
const maxRememberedLength = 4096;

export function checkStatement(sql: string): void {
  if (passed.has(sql)) return;
  scan(sql);
  if (sql.length <= maxRememberedLength) {
    if (passed.size >= maxRemembered) passed.clear();
    passed.add(sql);
  }
}

function scan(sql: string): void {
  const words = keywords(sql);
  if (words.length === 0) throw new ConnectError("sql must contain a statement", Code.InvalidArgument);
  const reject = (what: string, word: string) => {
    throw new ConnectError(
      `${word} is not allowed: ${what} would outlive this statement on a shared connection`,
      Code.InvalidArgument,
    );
  };
  const leading = forbiddenLeading.get(words[0]);
  if (leading) reject(leading, words[0]);
  for (let k = 0; k < words.length; k++) {
    const anywhere = forbiddenAnywhere.get(words[k]);
    if (anywhere) reject(anywhere, words[k]);
    // CREATE [GLOBAL|LOCAL] TEMP[ORARY] ... and SELECT ... INTO TEMP ...; a column named "temp" is fine.
    if ((words[k] === "TEMP" || words[k] === "TEMPORARY") && tempIntroducers.has(words[k - 1])) {
      reject("temporary tables", words[k]);
    }
  }
}

function skipLine(sql: string, i: number): number {
  const end = sql.indexOf("\n", i);
  return end === -1 ? sql.length : end + 1;
}

function skipBlockComment(sql: string, i: number): number {
  let depth = 0; // Postgres block comments nest
  while (i < sql.length) {
    if (sql[i] === "/" && sql[i + 1] === "*") { depth++; i += 2; continue; }
    if (sql[i] === "*" && sql[i + 1] === "/") { depth--; i += 2; if (depth === 0) return i; continue; }
    i++;
  }
  return i;
}

function skipQuoted(sql: string, i: number, quote: string, backslashes: boolean): number {
  i++;
  while (i < sql.length) {
    const c = sql[i];
    if (backslashes && c === "\\") { i += 2; continue; }
    if (c === quote) {
      if (sql[i + 1] === quote) { i += 2; continue; }
      return i + 1;
    }
    i++;
  }
  return i;
}
