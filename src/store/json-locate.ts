/**
 * Line and column of a place in JSON text, so a refused hand edit points at the line the
 * operator has to fix: the position of a JSON.parse error, or of the member a validation path
 * names (`machines.3.profile` -> where `"profile"` is written in the fourth machine).
 */

/** 1-based line and column. */
export interface TextPosition {
  line: number;
  column: number;
}

/** Line and column of character offset `offset` in `text`. */
export function positionAt(text: string, offset: number): TextPosition {
  let line = 1;
  let last = -1;
  const end = Math.min(Math.max(offset, 0), text.length);
  for (let i = 0; i < end; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      last = i;
    }
  }
  return { line, column: end - last };
}

/**
 * Position of a JSON.parse error: V8 says "at position N" or "line L column C" for some errors
 * and only quotes a snippet for others, so the text is scanned for the first error otherwise.
 */
export function parseErrorPosition(text: string, message: string): TextPosition | undefined {
  const lc = /line (\d+) column (\d+)/.exec(message);
  if (lc) return { line: Number(lc[1]), column: Number(lc[2]) };
  const pos = /at position (\d+)/.exec(message);
  if (pos) return positionAt(text, Number(pos[1]));
  const offset = jsonErrorOffset(text);
  return offset === undefined ? undefined : positionAt(text, offset);
}

/** Offset of the first syntax error in `text` (RFC 8259 grammar), undefined when it has none. */
export function jsonErrorOffset(text: string): number | undefined {
  let i = 0;
  const n = text.length;
  class Bad extends Error {}
  const fail = (): never => {
    throw new Bad();
  };
  const ws = (): void => {
    while (i < n && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const str = (): void => {
    if (text[i] !== '"') fail();
    i++;
    while (i < n && text[i] !== '"') {
      const c = text.charCodeAt(i);
      if (c < 0x20) fail();
      if (text[i] === '\\') {
        i++;
        if (text[i] === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail();
          i += 4;
        } else if (!'"\\/bfnrt'.includes(text[i] ?? 'x')) fail();
      }
      i++;
    }
    if (i >= n) fail();
    i++;
  };
  const value = (depth: number): void => {
    if (depth > 10_000) fail();
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        str();
        ws();
        if (text[i] !== ':') fail();
        i++;
        value(depth + 1);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return;
        }
        fail();
      }
    }
    if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (;;) {
        value(depth + 1);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return;
        }
        fail();
      }
    }
    if (c === '"') return str();
    const m = /^(-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?|true|false|null)/.exec(text.slice(i, i + 400));
    if (!m) fail();
    i += m![0].length;
  };
  try {
    value(0);
    ws();
    return i < n ? i : undefined;
  } catch (err) {
    if (err instanceof Bad) return i;
    return undefined;
  }
}

/**
 * Where `path` is written in valid JSON `text`: the start of the member's key for an object
 * member, of the element for an array item. As deep as the path can be followed (a path into a
 * missing member points at the object that lacks it); undefined for unparsable text.
 */
export function locateJsonPath(text: string, path: readonly PropertyKey[]): TextPosition | undefined {
  let i = 0;
  const n = text.length;
  const ws = (): void => {
    while (i < n && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const skipString = (): void => {
    i++;
    while (i < n && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
  };
  const skipValue = (): void => {
    ws();
    const c = text[i];
    if (c === '"') return skipString();
    if (c === '{' || c === '[') {
      let depth = 0;
      while (i < n) {
        const ch = text[i];
        if (ch === '"') {
          skipString();
          continue;
        }
        if (ch === '{' || ch === '[') depth++;
        else if (ch === '}' || ch === ']') {
          depth--;
          if (depth === 0) {
            i++;
            return;
          }
        }
        i++;
      }
      return;
    }
    while (i < n && !',}] \t\n\r'.includes(text[i]!)) i++;
  };
  let at = 0;
  try {
    ws();
    at = i;
    for (const key of path) {
      ws();
      if (text[i] === '{') {
        i++;
        let found = false;
        while (i < n) {
          ws();
          if (text[i] === '}') break;
          const keyStart = i;
          skipString();
          const name = JSON.parse(text.slice(keyStart, i)) as string;
          ws();
          i++; // ':'
          if (name === String(key)) {
            at = keyStart;
            found = true;
            break;
          }
          skipValue();
          ws();
          if (text[i] === ',') i++;
        }
        if (!found) return positionAt(text, at);
      } else if (text[i] === '[') {
        i++;
        const index = Number(key);
        for (let k = 0; k < index; k++) {
          skipValue();
          ws();
          if (text[i] !== ',') return positionAt(text, at);
          i++;
        }
        ws();
        at = i;
      } else {
        return positionAt(text, at);
      }
    }
    return positionAt(text, at);
  } catch {
    return undefined;
  }
}
