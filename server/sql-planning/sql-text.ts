// Just enough of PostgreSQL's lexer to find where a node of the parse tree ends in the statement's
// text: the parser gives each node's start offset, never its end. Skips what may hide a parenthesis
// or a keyword: string constants ('…', E'…' with backslashes, $tag$…$tag$), quoted identifiers and
// comments (nested /* */ included).
export interface Token { start: number; end: number }

const identChar = /[A-Za-z0-9_$\u0080-\uffff]/;

/** Where whitespace and comments after `pos` end. */
export function skipSpace(sql: string, pos: number): number {
  while (pos < sql.length) {
    const c = sql[pos];
    if (c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\f") pos++;
    else if (c === "-" && sql[pos + 1] === "-") {
      while (pos < sql.length && sql[pos] !== "\n") pos++;
    } else if (c === "/" && sql[pos + 1] === "*") {
      let depth = 0;
      while (pos < sql.length) {
        if (sql[pos] === "/" && sql[pos + 1] === "*") { depth++; pos += 2; } else if (sql[pos] === "*" && sql[pos + 1] === "/") {
          depth--; pos += 2;
          if (depth === 0) break;
        } else pos++;
      }
    } else break;
  }
  return pos;
}

/** The token that starts at `start` (after skipping space); a parenthesis is a token of its own. */
export function tokenAt(sql: string, start: number): Token {
  let pos = skipSpace(sql, start);
  const begin = pos;
  const c = sql[pos];
  if (c === undefined) return { start: begin, end: begin };
  if (c === "'" || ((c === "E" || c === "e") && sql[pos + 1] === "'")) {
    const backslashes = c !== "'";
    pos += backslashes ? 2 : 1;
    while (pos < sql.length) {
      if (backslashes && sql[pos] === "\\") pos += 2;
      else if (sql[pos] === "'") {
        if (sql[pos + 1] === "'") pos += 2;
        else return { start: begin, end: pos + 1 };
      } else pos++;
    }
    return { start: begin, end: pos };
  }
  if (c === '"' || ((c === "U" || c === "u") && sql[pos + 1] === "&" && sql[pos + 2] === '"')) {
    pos = sql.indexOf('"', pos) + 1;
    while (pos < sql.length) {
      if (sql[pos] === '"') {
        if (sql[pos + 1] === '"') pos += 2;
        else return { start: begin, end: pos + 1 };
      } else pos++;
    }
    return { start: begin, end: pos };
  }
  if (c === "$") {
    const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(pos, pos + 64));
    if (tag) {
      const close = sql.indexOf(tag[0], pos + tag[0].length);
      return { start: begin, end: close < 0 ? sql.length : close + tag[0].length };
    }
    pos++;
    while (pos < sql.length && sql[pos] >= "0" && sql[pos] <= "9") pos++;
    return { start: begin, end: pos };
  }
  if (c === "(" || c === ")" || c === "," || c === ";" || c === "[" || c === "]") return { start: begin, end: pos + 1 };
  if (c >= "0" && c <= "9" || (c === "." && /[0-9]/.test(sql[pos + 1] ?? ""))) {
    while (pos < sql.length && /[0-9A-Za-z_.]/.test(sql[pos])) {
      if ((sql[pos] === "e" || sql[pos] === "E") && (sql[pos + 1] === "+" || sql[pos + 1] === "-")) pos++;
      pos++;
    }
    return { start: begin, end: pos };
  }
  if (identChar.test(c)) {
    while (pos < sql.length && identChar.test(sql[pos])) pos++;
    return { start: begin, end: pos };
  }
  // An operator: a run of operator characters.
  while (pos < sql.length && "+-*/<>=~!@#%^&|`?:".includes(sql[pos])) pos++;
  return { start: begin, end: Math.max(pos, begin + 1) };
}

/** The end (exclusive) of the parenthesised group whose "(" is the next token after `pos`. */
export function groupEnd(sql: string, pos: number): number {
  let depth = 0;
  for (;;) {
    const t = tokenAt(sql, pos);
    if (t.start === t.end) return t.end;
    const text = sql[t.start];
    if (t.end - t.start === 1 && (text === "(" || text === "[")) depth++;
    else if (t.end - t.start === 1 && (text === ")" || text === "]")) {
      depth--;
      if (depth === 0) return t.end;
    }
    pos = t.end;
  }
}

/** The next token's text, lower-cased when it is a keyword or identifier. */
export function tokenText(sql: string, t: Token): string {
  return sql.slice(t.start, t.end).toLowerCase();
}
