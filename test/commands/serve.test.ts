/**
 * `serve` as a process: SIGHUP reloads (templates, database, log file) and keeps serving; on a
 * terminal the log is one human line per event.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, constants, existsSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, ROOT, loopbackArgs, makeHome, startApplianceProcess } from '../helpers/appliance-process.js';

const MAC = '52:54:00:aa:bb:01';

async function get(url: string): Promise<string> {
  const res = await fetch(url);
  return res.text();
}

test('SIGHUP picks up a template change now, logs what changed, and keeps serving', async (t) => {
  const home = makeHome();
  // The default profile boots RancherOS from assets: stand-ins, so /ipxe renders the template.
  mkdirSync(join(home.assets, 'rancheros', 'v1.5.8'), { recursive: true });
  for (const f of ['vmlinuz', 'initrd']) writeFileSync(join(home.assets, 'rancheros', 'v1.5.8', f), 'x');
  const app = await startApplianceProcess(loopbackArgs(home));
  t.teardown(() => void app.stop());
  const before = await get(`${app.url}/ipxe?mac=${MAC}`);
  t.regex(before, /^#!ipxe\n# netboot-appliance: profile rancheros/);
  t.false(before.includes('edited-by-the-test'));

  appendFileSync(join(home.templates, 'profile.ipxe.njk'), '\n# edited-by-the-test\n');
  writeFileSync(join(home.templates, 'extra.ipxe.njk'), '#!ipxe\n{% if %}\n');
  const reloaded = app.waitFor('reloaded');
  const broken = app.waitFor(/^template extra\.ipxe\.njk does not compile/);
  app.child.kill('SIGHUP');
  const entry = await reloaded;
  t.deepEqual(entry.templates, { added: ['extra.ipxe.njk'], changed: ['profile.ipxe.njk'], removed: [], broken: ['extra.ipxe.njk'] });
  t.is(entry.db, 'unchanged');
  t.is((await broken).level, 40);
  t.true((await get(`${app.url}/ipxe?mac=${MAC}`)).includes('edited-by-the-test'));
  t.is(app.child.exitCode, null, 'still running after SIGHUP');
  t.is(await app.stop(), 0);
});

/** The file's text once a line matches `re` (bounded: 20 s). */
async function waitForLine(file: string, re: RegExp): Promise<string> {
  for (let i = 0; i < 200; i++) {
    if (existsSync(file) && re.test(readFileSync(file, 'utf8'))) return readFileSync(file, 'utf8');
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${re} not in ${file}`);
}

/** The appliance logging to a --log-file in a fresh home, once the file says it is ready. */
async function startWithLogFile(t: ExecutionContext): Promise<{ child: ChildProcess; exited: Promise<number | null>; logFile: string }> {
  const home = makeHome();
  const logFile = join(home.dir, 'appliance.log');
  const child = spawn(process.execPath, [BIN, ...loopbackArgs(home), '--log-file', logFile], { cwd: ROOT, env: { PATH: process.env.PATH }, stdio: 'ignore' });
  const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  t.teardown(() => child.kill('SIGKILL'));
  await waitForLine(logFile, /"msg":"netboot appliance ready"/);
  return { child, exited, logFile };
}

test('SIGHUP reloads the database and reopens --log-file after logrotate moved it', async (t) => {
  const { child, exited, logFile } = await startWithLogFile(t);
  renameSync(logFile, `${logFile}.1`);
  child.kill('SIGHUP');
  const fresh = await waitForLine(logFile, /"msg":"reloaded"/);
  t.notRegex(fresh, /netboot appliance ready/, 'a new file, not the moved one');
  t.regex(readFileSync(`${logFile}.1`, 'utf8'), /netboot appliance ready/);
  child.kill('SIGTERM');
  t.is(await exited, 0);
  // The lines SIGTERM itself made, the last of them logged just before exit, reached the file.
  const lines = readFileSync(logFile, 'utf8').trimEnd().split('\n');
  t.true(lines.some((l) => l.includes('"msg":"stopping"')));
  t.regex(lines.at(-1) ?? '', /"msg":"stopped"/);
});

test('--log-file is written asynchronously yet complete at exit: after SIGHUP and SIGTERM in one tick the lines up to "stopped" are in the file', async (t) => {
  const { child, exited, logFile } = await startWithLogFile(t);
  // Two signals in one tick: the reload's lines and the stop's race to the file, and the process
  // exits right after logging "stopped".
  child.kill('SIGHUP');
  child.kill('SIGTERM');
  t.is(await exited, 0);
  const messages = readFileSync(logFile, 'utf8')
    .trimEnd()
    .split('\n')
    .map((l) => (JSON.parse(l) as { msg: string }).msg);
  t.true(messages.includes('netboot appliance ready'));
  t.true(messages.includes('stopping'));
  t.true(messages.includes('stopped'), `the line logged just before exit is in the file: ${messages.slice(-4).join(' | ')}`);
});

test('a --log-file that cannot be opened is a setting error (exit 2) naming the path', (t) => {
  const home = makeHome();
  const logFile = join(home.dir, 'no-such-dir', 'appliance.log');
  const r = spawnSync(process.execPath, [BIN, ...loopbackArgs(home), '--log-file', logFile], {
    cwd: ROOT,
    env: { PATH: process.env.PATH },
    encoding: 'utf8',
    timeout: 60_000,
  });
  t.is(r.status, 2);
  t.regex(r.stderr, /--log-file .*no-such-dir\/appliance\.log cannot be opened for appending \(ENOENT\)/);
});

/** The appliance on a pty, as an operator's terminal would run it (script(1) holds the master). */
function startOnPty(home: ReturnType<typeof makeHome>, extra: string[]) {
  // exec: the appliance is script's own child, so the test can signal it.
  const cmd = ['exec', ...[process.execPath, BIN, ...loopbackArgs(home), ...extra].map((a) => `'${a}'`)].join(' ');
  const child = spawn('script', ['-qfec', cmd, '/dev/null'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, NO_COLOR: '1', TERM: 'dumb' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const appliancePids = () =>
    spawnSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter(Boolean)
      .map(Number);
  const signalAppliance = (signal: NodeJS.Signals) => {
    for (const pid of appliancePids()) {
      try {
        process.kill(pid, signal);
      } catch {
        // exited between pgrep and kill
      }
    }
  };
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return { child, output: () => out.replace(/\r/g, ''), appliancePids, signalAppliance, exited };
}

async function until(what: string, check: () => boolean, ms = 20_000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end;) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('on a terminal the log is one human line per event; --log-format json keeps JSON', async (t) => {
  const home = makeHome();
  const runOnPty = async (extra: string[]): Promise<string> => {
    const pty = startOnPty(home, extra);
    t.teardown(() => {
      pty.signalAppliance('SIGKILL');
      pty.child.kill('SIGKILL');
    });
    // Killing script alone would hang up the pty, which stops the appliance too; signal it itself.
    await until('ready on the pty', () => /netboot appliance ready/.test(pty.output()));
    pty.signalAppliance('SIGTERM');
    await pty.exited;
    return pty.output();
  };
  const human = await runOnPty([]);
  const ready = human.split('\n').find((l) => l.includes('netboot appliance ready'));
  t.regex(ready ?? '', /^\d\d:\d\d:\d\d\.\d{3} INFO {2}\S* *netboot appliance ready ports=\{"http":\d+/);
  t.notRegex(human, /^\{"level"/m);
  // A boot-file line carries its fields as key=value.
  t.regex(human, /INFO .*boot file firmware=bios file=undionly\.kpxe/);
  const json = await runOnPty(['--log-format', 'json']);
  t.regex(json, /^\{"level":30,"time":\d+,.*"msg":"starting netboot appliance"\}$/m);
});

test('started on a terminal: kill -HUP reloads, and closing the terminal stops the appliance instead of leaving an orphan', async (t) => {
  const home = makeHome();
  const logFile = join(home.dir, 'appliance.log');
  const pty = startOnPty(home, ['--log-file', logFile]);
  t.teardown(() => {
    pty.signalAppliance('SIGKILL');
    pty.child.kill('SIGKILL');
  });
  const log = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  await until('ready', () => /"msg":"netboot appliance ready"/.test(log()));
  const [pid] = pty.appliancePids();
  t.truthy(pid);
  const alive = () => spawnSync('kill', ['-0', String(pid)]).status === 0;
  // The terminal is still there: a SIGHUP is an operator's reload.
  process.kill(pid!, 'SIGHUP');
  await until('reloaded', () => /"msg":"reloaded"/.test(log()));
  t.true(alive());
  // The terminal goes away (its emulator dies): the kernel hangs up the pty and sends SIGHUP.
  pty.child.kill('SIGKILL');
  await until('the appliance to exit', () => !alive());
  t.regex(log(), /"msg":"the terminal closed: stopping/);
  t.regex(log(), /"msg":"stopped"/);
});

test('SIGTERM during startup stops cleanly: what had started is closed, "stopped" is logged, exit 0', async (t) => {
  const home = makeHome();
  // The api token file is a FIFO: start() blocks reading it (after the state store, the timeline
  // and db.json are open, before any port is bound) until the test writes the token.
  const fifo = join(home.dir, 'api-token');
  t.is(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo');
  const child = spawn(process.execPath, [BIN, ...loopbackArgs(home)], { cwd: ROOT, env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString('utf8')));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString('utf8')));
  const msgs = (): string[] =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => String((JSON.parse(l) as { msg?: unknown }).msg));
  await until('"starting netboot appliance"', () => msgs().includes('starting netboot appliance'));
  child.kill('SIGTERM');
  await until('"stopping" or an exit', () => msgs().some((m) => m.startsWith('stopping')) || child.exitCode !== null || child.signalCode !== null);
  t.is(child.signalCode, null, `killed by the signal instead of stopping: ${out}`);
  t.true(
    msgs().some((m) => m.startsWith('stopping: closing what has started once startup settles')),
    out,
  );
  // Let start() go on: a writer opens the FIFO once start() reads it (non-blocking: ENXIO while
  // nobody reads it, as before start() gets there on a loaded machine).
  let fd: number | undefined;
  await until('start() reading the api token FIFO', () => {
    try {
      fd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENXIO') throw err;
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the appliance is gone (${child.exitCode ?? child.signalCode}): ${out}`);
      return false;
    }
  });
  writeSync(fd!, 'startup-token-0123456789abcdef\n');
  closeSync(fd!);
  t.deepEqual(await exited, { code: 0, signal: null }, out);
  t.is(msgs().at(-1), 'stopped', out);
});
