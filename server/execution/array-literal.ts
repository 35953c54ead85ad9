// Postgres array text ('{1,NULL,"a \"b\""}', '{{1,2},{3,4}}', '[0:1]={7,8}') into nested arrays of
// element text (null for NULL). The router reads arrays itself because postgres.js 3.4.9 hands an
// unquoted NULL element to the element parser as the text "NULL".
export type ArrayItems = (string | null | ArrayItems)[];

export function parseArrayLiteral(text: string): ArrayItems {
  let i = 0;
  if (text[0] === "[") i = text.indexOf("=") + 1; // explicit bounds: the elements are what follows
  const parse = (): ArrayItems => {
    if (text[i] !== "{") throw new Error(`malformed array literal at ${i}: ${text.slice(0, 40)}`);
    i++;
    const items: ArrayItems = [];
    while (text[i] !== "}") {
      if (text[i] === "{") items.push(parse());
      else if (text[i] === '"') items.push(quoted());
      else items.push(bare());
      if (text[i] === ",") i++;
      else if (text[i] !== "}") throw new Error(`malformed array literal at ${i}: ${text.slice(0, 40)}`);
    }
    i++;
    return items;
  };
  const quoted = (): string => {
    let out = "";
    for (i++; text[i] !== '"'; i++) {
      if (i >= text.length) throw new Error("unterminated quoted array element");
      if (text[i] === "\\") i++;
      out += text[i];
    }
    i++;
    return out;
  };
  const bare = (): string | null => {
    const start = i;
    while (i < text.length && text[i] !== "," && text[i] !== "}") i++;
    const token = text.slice(start, i).trim();
    return token.toUpperCase() === "NULL" ? null : token; // a quoted "NULL" is text, never here
  };
  return parse();
}
