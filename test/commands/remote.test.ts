/**
 * `status`, `machines` and `events --follow` against a running appliance, through its API with
 * the token from the token file; `GET /api/version`.
 */
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { healthLines } from '../../src/commands/remote.js';
import { BIN, ROOT, loopbackArgs, makeHome, startApplianceProcess } from '../helpers/appliance-process.js';

const MAC = '52:54:00:aa:bb:02';

function cli(args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, env: { PATH: process.env.PATH }, encoding: 'utf8', timeout: 30_000 });
}

test('status prints a degraded health with each problem and warning', (t) => {
  t.deepEqual(
    healthLines({
      status: 'degraded',
      problems: ['state store: cannot write /x: EROFS'],
      warnings: ['facts index: 3 machines left out by its limits'],
      store: { ok: true, loadedAt: '2026-12-02T05:00:00.000Z' },
    }),
    [
      'health: degraded',
      '  problem: state store: cannot write /x: EROFS',
      '  warning: facts index: 3 machines left out by its limits',
      'database: ok, loaded 2026-12-02T05:00:00.000Z',
    ],
  );
  t.deepEqual(healthLines({ status: 'degraded', store: { ok: false, error: 'line 3: not json', loadedAt: 'T' } }), [
    'health: degraded',
    'database: refused: line 3: not json, loaded T',
  ]);
});

test('status, machines and events talk to the running appliance', async (t) => {
  const home = makeHome();
  const app = await startApplianceProcess(loopbackArgs(home));
  t.teardown(() => void app.stop());
  const token = readFileSync(join(home.dir, 'api-token'), 'utf8').trim();
  const put = await fetch(`${app.url}/api/machines/${MAC}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ mac: MAC, hostname: 'node7', profile: 'rancheros' }),
  });
  t.is(put.status, 201);
  // An API read like the others: refused without the token (so is `status`, below), answered with it.
  t.is((await fetch(`${app.url}/api/version`)).status, 401);
  const version = (await (await fetch(`${app.url}/api/version`, { headers: { authorization: `Bearer ${token}` } })).json()) as {
    name: string;
    version: string;
    node: string;
  };
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  t.deepEqual(version, { name: 'netboot-appliance', version: pkg.version, node: process.version });

  // The client finds the port through --http-port and the token through --db's directory.
  const where = ['--http-port', String(app.ports.http), '--db', home.db];
  const status = cli(['status', ...where]);
  t.is(status.status, 0, status.stderr);
  t.regex(
    status.stdout,
    new RegExp(`^netboot-appliance ${pkg.version.replace(/\./g, '\\.')} \\(node v[\\d.]+\\) at http://127\\.0\\.0\\.1:${app.ports.http}\\n`),
  );
  t.regex(status.stdout, /^health: ok\ndatabase: ok, loaded \S+$/m);
  t.regex(status.stdout, /^machines: 1$/m);
  // Without a token (no --api-token, no token file beside --db) status says how to pass one.
  const noToken = cli(['status', '--http-port', String(app.ports.http), '--db', join(home.dir, 'elsewhere', 'db.json')]);
  t.is(noToken.status, 1);
  t.regex(noToken.stderr, /answered 401: .*pass --api-token, or --db of that appliance/);

  const machines = cli(['machines', '--url', app.url, '--db', home.db]);
  t.is(machines.status, 0, machines.stderr);
  t.regex(machines.stdout, /^MAC +HOSTNAME +PROFILE +IP +STATE\n52:54:00:aa:bb:02 +node7 +rancheros +- +-$/m);
  const asJson = JSON.parse(cli(['machines', '--url', app.url, '--db', home.db, '--json']).stdout) as Array<{ mac: string }>;
  t.deepEqual(
    asJson.map((m) => m.mac),
    [MAC],
  );

  // --follow prints events as they happen, each once, until SIGINT (exit 0).
  // The live stream needs the token: --db points the client at the appliance's token file.
  const follow = spawn(process.execPath, [BIN, 'events', '--follow', '--json', '--url', app.url, '--db', home.db, '--mac', MAC], {
    cwd: ROOT,
    env: { PATH: process.env.PATH },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => follow.kill('SIGKILL'));
  let out = '';
  follow.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const followExit = new Promise<number | null>((r) => follow.once('exit', (c) => r(c)));
  await new Promise((r) => setTimeout(r, 1500));
  for (let i = 0; i < 2; i++) await (await fetch(`${app.url}/ipxe?mac=${MAC}`)).text();
  for (let i = 0; i < 50 && out.trim().split('\n').filter(Boolean).length < 2; i++) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 1200));
  follow.kill('SIGINT');
  t.is(await followExit, 0);
  const events = out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { mac: string; type: string });
  t.is(events.length, 2, out);
  t.true(events.every((e) => e.mac === MAC && e.type === 'http-script'));

  // Without the token the stream is refused, saying how to pass it.
  const refused = cli(['events', '--follow', '--url', app.url, '--api-token', 'wrong-token-0123456789']);
  t.is(refused.status, 1);
  t.regex(refused.stderr, /answered 401: .*pass --api-token, or --db of that appliance/);

  const recent = cli(['events', '--url', app.url, '--db', home.db]);
  t.is(recent.status, 0, recent.stderr);
  t.regex(recent.stdout, /^\S+Z http-script +52:54:00:aa:bb:02 +127\.0\.0\.1 +outcome=retry/m);
});
