/** The human log format and the terminal writer shared with the progress bar. */
import test from 'ava';
import { Writable } from 'node:stream';
import { createLogOutput, formatHumanLine } from '../src/log.js';
import { createProgressReporter } from '../src/fetch/progress.js';

/** A stream that says it is a terminal and records what is written. */
function fakeTty(): Writable & { isTTY: boolean; columns: number; text(): string } {
  let text = '';
  const s = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  }) as Writable & { isTTY: boolean; columns: number; text(): string };
  s.isTTY = true;
  s.columns = 100;
  s.write = ((chunk: string) => {
    text += chunk;
    return true;
  }) as typeof s.write;
  s.text = () => text;
  return s;
}

test('a human line: time, level, subsystem, MAC, message, key fields', (t) => {
  const time = new Date(2026, 11, 1, 9, 8, 7, 6).getTime();
  const line = JSON.stringify({
    level: 30,
    time,
    subsystem: 'dhcp',
    mac: '52:54:00:12:34:56',
    xid: '0x1a2b',
    arch: 7,
    file: 'snponly.efi',
    reason: 'two words',
    msg: 'proxy offer sent',
  });
  t.is(
    formatHumanLine(line, { color: false }),
    '09:08:07.006 INFO  dhcp   52:54:00:12:34:56 proxy offer sent xid=0x1a2b arch=7 file=snponly.efi reason="two words"',
  );
  t.is(
    formatHumanLine(JSON.stringify({ level: 50, time, msg: 'x', err: { type: 'Error', message: 'boom', stack: 'Error: boom\n at' } }), { color: false }),
    '09:08:07.006 ERROR        x err="boom"',
  );
  t.regex(formatHumanLine(JSON.stringify({ level: 40, time, msg: 'w' }), { color: true }), /\x1b\[33mWARN \x1b\[0m/);
  t.is(formatHumanLine('not json', { color: false }), 'not json');
  // A message cannot forge a second line.
  t.false(formatHumanLine(JSON.stringify({ level: 30, time, msg: 'a\nFATAL b' }), { color: false }).includes('\n'));
});

test('auto is human on a terminal and JSON on a pipe; --log-format overrides', (t) => {
  const tty = fakeTty();
  createLogOutput({ destination: tty }).log.info({ mac: '52:54:00:00:00:01' }, 'hello');
  t.regex(tty.text(), /^\d\d:\d\d:\d\d\.\d{3} \x1b\[32mINFO \x1b\[0m +52:54:00:00:00:01 hello\n$/);
  const tty2 = fakeTty();
  createLogOutput({ destination: tty2, format: 'json' }).log.info('hello');
  t.regex(tty2.text(), /^\{"level":30,"time":\d+,"msg":"hello"\}\n$/);
  let piped = '';
  const pipe = new Writable({ write: (c: Buffer, _e, cb) => ((piped += c.toString()), cb()) });
  const out = createLogOutput({ destination: pipe });
  t.is(out.format, 'json');
  out.log.info('hello');
  t.regex(piped, /^\{"level":30,"time":\d+,"msg":"hello"\}\n$/);
});

test('a progress bar and log lines on one terminal never share a line', (t) => {
  const tty = fakeTty();
  const { log } = createLogOutput({ destination: tty, format: 'human' });
  const bar = createProgressReporter({ log, stream: tty as unknown as NodeJS.WriteStream });
  bar.onProgress({ file: 'vmlinuz', url: 'http://x/vmlinuz', received: 10, total: 100, resumedFrom: 0, done: false });
  log.warn('download interrupted, retrying');
  bar.onProgress({ file: 'vmlinuz', url: 'http://x/vmlinuz', received: 100, total: 100, resumedFrom: 0, done: true });
  log.info('after');
  // Split the way a terminal shows it: \r returns to the start, ESC[2K erases the line.
  const shown: string[] = [];
  let current = '';
  for (const piece of tty.text().split(/(\r\x1b\[2K|\n)/)) {
    if (piece === '\n') {
      shown.push(current);
      current = '';
    } else if (piece === '\r\x1b[2K') current = '';
    else current += piece;
  }
  t.is(current, '', 'no bar left on the last line');
  t.is(shown.length, 3);
  t.regex(shown[0]!, /^\S+ \x1b\[33mWARN \x1b\[0m +download interrupted, retrying$/);
  t.regex(shown[1]!, /^vmlinuz \[=+\] 100% \| 0\.0 MiB \/ 0\.0 MiB \| ETA \S+$/);
  t.regex(shown[2]!, /INFO .* after$/);
});
