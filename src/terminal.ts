/**
 * One writer per terminal stream, shared by the human log format and the download progress bar:
 * the bar is a status line kept at the bottom, and a log line clears it, is printed, and the bar
 * is redrawn under it, so the two never interleave on one line.
 */

/** Writes whole lines to a stream, keeping an optional status line below them. */
export interface Terminal {
  /** Write one line (without its newline) above the status line. */
  writeLine(text: string): void;
  /** Show `text` as the status line (one line, no newline), or remove it with undefined. */
  setStatus(text: string | undefined): void;
}

const terminals = new WeakMap<NodeJS.WritableStream, Terminal>();
// Carriage return + "erase the whole line" (ECMA-48 EL 2).
const CLEAR = '\r\x1b[2K';

/** The one Terminal of `stream` (created on first use). */
export function terminalFor(stream: NodeJS.WritableStream): Terminal {
  let t = terminals.get(stream);
  if (!t) {
    let status: string | undefined;
    t = {
      writeLine(text) {
        stream.write(status === undefined ? `${text}\n` : `${CLEAR}${text}\n${status}`);
      },
      setStatus(text) {
        if (text === undefined) {
          if (status !== undefined) stream.write(CLEAR);
        } else {
          stream.write(`${CLEAR}${text}`);
        }
        status = text;
      },
    };
    terminals.set(stream, t);
  }
  return t;
}

/** True when `stream` is an interactive terminal. */
export function isTerminal(stream: NodeJS.WritableStream): boolean {
  return (stream as NodeJS.WriteStream).isTTY === true;
}
