import test from 'ava';
import { parse as parseYaml } from 'yaml';
import { buildCmdline, initrdNames, interpolate, ipxeEchoText, yamlComment, yamlQuote } from '../../src/http/render.js';
import { ProfileSchema } from '../../src/store/schema.js';

test('yamlQuote: every hostile string round-trips through YAML as the same string', (t) => {
  const hostile = [
    'a\nb: c',
    'x: y',
    '- z',
    '# c',
    '"q"',
    "'s'",
    '\\',
    '{a: 1}',
    '[1]',
    '\u2028',
    '\u0085',
    '\ufeff',
    'null',
    'true',
    '0x10',
    '1e3',
    '~',
    '',
    ' lead',
    '&anchor',
    '*alias',
    '!tag',
    '%dir',
    '@at',
    '`tick`',
    '|',
    '>',
  ];
  for (const s of hostile) {
    t.is(parseYaml(`k: ${yamlQuote(s)}\n`).k, s, JSON.stringify(s));
    t.false(yamlQuote(s).includes('\n'));
  }
  t.deepEqual(parseYaml(`k: ${yamlQuote(['a', 1, { b: 'c\nd' }])}\n`).k, ['a', 1, { b: 'c\nd' }]);
});

test('interpolate: only known names, no code', (t) => {
  t.is(interpolate('http://{{ address }}:{{port}}/x', { address: '10.0.0.1', port: '80' }, 'w'), 'http://10.0.0.1:80/x');
  t.is(
    interpolate('{{ range.constructor("return process")() }}', {}, 'w'),
    '{{ range.constructor("return process")() }}',
    'not a placeholder: left as text, then refused by the token check',
  );
  t.throws(() => interpolate('{{ nope }}', { address: 'x' }, 'w'), { code: 'ERR_TEMPLATE' });
});

test('buildCmdline: object and string forms, flags, repeated keys; what breaks a line is refused at write time', (t) => {
  const p = (cmdline: unknown) => ProfileSchema.parse({ id: 'p', kernel: '/assets/k', cmdline });
  t.deepEqual(buildCmdline(p({ quiet: '', console: ['tty0', 'ttyS0,115200n8'], n: 3 }), {}), ['quiet', 'console=tty0', 'console=ttyS0,115200n8', 'n=3']);
  t.deepEqual(buildCmdline(p('a=1   b  {{ mac }}'), { mac: '52:54:00:00:00:01' }), ['a=1', 'b', '52:54:00:00:00:01']);
  // Kernel-argument characters and iPXE settings pass unchanged (iPXE expands ${...}).
  t.deepEqual(buildCmdline(p({ a: '${ip}', b: 'x;y', c: 'a&&b', d: '#c' }), {}), ['a=${ip}', 'b=x;y', 'c=a&&b', 'd=#c']);
  for (const bad of [{ a: 'x y' }, { a: 'x\nshell' }, { a: 'q"uote' }, { a: "q'" }, { a: 'tail\\' }]) {
    t.false(ProfileSchema.safeParse({ id: 'p', kernel: '/assets/k', cmdline: bad }).success, JSON.stringify(bad));
  }
  for (const bad of ['a\nshell', 'x || shell', 'x ; y', 'x && y', 'x #comment', 'x {{ constructor }}', 'x {{nope}}']) {
    t.false(ProfileSchema.safeParse({ id: 'p', kernel: '/assets/k', cmdline: bad }).success, JSON.stringify(bad));
  }
  // A value placed at render time is checked again, and can never add an argument.
  t.throws(() => buildCmdline(p('a={{ vars.x }} b'), { 'vars.x': 'y c=evil' }), { code: 'ERR_UNSAFE_VALUE' });
  t.throws(() => buildCmdline(p({ a: '{{ vars.x }}' }), { 'vars.x': 'y || shell' }), { code: 'ERR_UNSAFE_VALUE' });
  // Prototype names are not values.
  t.throws(() => buildCmdline(p({ a: '{{ vars.constructor }}' }), {}), { code: 'ERR_TEMPLATE' });
});

test('initrdNames: file names, de-duplicated', (t) => {
  t.deepEqual(initrdNames(['/assets/a/initrd', '/assets/b/initrd', 'http://x/y/fw.cpio', '/assets/weird/x~y']), ['initrd', '1-initrd', 'fw.cpio', 'initrd3']);
});

test('ipxeEchoText keeps the reason legible and leaves iPXE nothing to interpret', (t) => {
  const s = ipxeEchoText('a ${x} || b && c ; #d\ne\\');
  t.is(s, 'a $ {x} "||" b "&&" c ";" "#d" e\\ .');
  const reason = ipxeEchoText('profile p cmdline argument "x y" contains whitespace (iPXE splits arguments there)');
  t.is(reason, 'profile p cmdline argument "x y" contains whitespace (iPXE splits arguments there)');
});

test('optional placeholders drop only their own argument when the value is unset, null or empty', (t) => {
  const p = (cmdline: unknown) => ProfileSchema.parse({ id: 'p', kernel: '/assets/k', cmdline });
  const values = { 'vars.password': 'pw', 'vars.empty': '', mac: '52:54:00:00:00:01' };
  t.deepEqual(
    buildCmdline(p({ 'rancher.password': '{{ vars.password? }}', 'rancher.autologin': '{{ vars.autologin? }}', e: '{{vars.empty?}}', quiet: '' }), values),
    ['rancher.password=pw', 'quiet'],
  );
  t.deepEqual(buildCmdline(p('a=1 pw={{ vars.password? }} al={{ vars.autologin ? }} url=http://x/{{ mac }}'), values), [
    'a=1',
    'pw=pw',
    'url=http://x/52:54:00:00:00:01',
  ]);
  t.is(interpolate('{{ vars.autologin? }}', {}, 'w'), undefined);
  // Without "?", an unknown name is still an error, never silently dropped.
  t.throws(() => buildCmdline(p({ a: '{{ vars.autologin }}' }), values), { code: 'ERR_TEMPLATE' });
  // A value that is present is still checked as an iPXE token.
  t.throws(() => buildCmdline(p({ a: '{{ vars.x? }}' }), { 'vars.x': 'a b' }), { code: 'ERR_UNSAFE_VALUE' });
});

test('yamlComment: nothing a YAML parser reads as a line break survives', (t) => {
  for (const s of ['a\nb: 1', 'a\rb: 1', 'a\u0085b: 1', 'a\u2028b: 1', 'a\u2029b: 1']) {
    const doc = parseYaml(`# ${yamlComment(s)}\nk: v\n`) as Record<string, unknown>;
    t.deepEqual(doc, { k: 'v' }, JSON.stringify(s));
  }
});
