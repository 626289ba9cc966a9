import test from 'ava';
import { buildCmdline, placeholderValues } from '../../src/http/render.js';
import { cmdlineIssues, ipxeTokenProblem, splitCmdline } from '../../src/store/cmdline.js';
import { MachineSchema, parseDb, ProfileSchema } from '../../src/store/schema.js';

const server = { address: '10.0.0.1', port: 8080 };
const req = { mac: '52:54:00:12:34:56', uuid: '11111111-2222-3333-4444-555555555555' };
const render = (cmdline: unknown, vars?: Record<string, unknown>) => {
  const profile = ProfileSchema.parse({ id: 'p', kernel: '/assets/k', cmdline, ...(vars ? { vars } : {}) });
  return buildCmdline(profile, placeholderValues(server, req, profile, undefined));
};

// iPXE's tokenizer (src/core/exec.c split_command / command_terminator, src/image/script.c):
// whitespace splits, a token *starting* with # comments, a token that *is* ||, && or ; separates,
// a line ending in \ continues. Everything else is one argument.
const tokens: Array<[string, boolean]> = [
  ['cloud-config-url=http://10.0.0.1:8080/cloud?uuid=${uuid}', true],
  ['coreos.config.url=http://10.0.0.1:8080/ignition?uuid=${uuid}&mac=${mac:hexhyp}', true],
  ['ds=nocloud-net;s=http://10.0.0.1:8080/nocloud/', true],
  ['rancher.cloud_init.datasources=[url:http://10.0.0.1:8080/cloud-config?mac=${net0/mac}]', true],
  ['a=${buildarch},${ip}%20{}', true],
  ['x#y', true],
  ['-dash', true],
  ['back\\slash', true],
  ['ünï', true],
  ['#comment', false],
  ['||', false],
  ['&&', false],
  [';', false],
  ['a b', false],
  ['a\tb', false],
  ['a\vb', false],
  ['a\fb', false],
  ['a\rb', false],
  ['a\nb', false],
  ['a\u0000b', false],
  ['a\u0085b', false],
  ['a\u2028b', false],
  ['q"uote', false],
  ["q'uote", false],
  ['ends\\', false],
  ['', false],
];

test("ipxeTokenProblem follows iPXE's tokenizer token by token", (t) => {
  for (const [token, ok] of tokens) t.is(ipxeTokenProblem(token) === undefined, ok, JSON.stringify(token));
});

test('the forms users write are accepted and reach iPXE unchanged: bootcfg, matchbox, NoCloud, RancherOS with iPXE settings', (t) => {
  // The bootcfg README's boot config example.
  t.deepEqual(render({ 'cloud-config-url': 'http://10.0.0.1:8080/cloud?uuid=${uuid}', 'coreos.autologin': '' }), [
    'cloud-config-url=http://10.0.0.1:8080/cloud?uuid=${uuid}',
    'coreos.autologin',
  ]);
  // matchbox profile args, string form.
  t.deepEqual(
    render('coreos.config.url=http://{{ address }}:{{ port }}/ignition?uuid=${uuid}&mac=${mac:hexhyp} coreos.first_boot=yes console=tty0 console=ttyS0'),
    ['coreos.config.url=http://10.0.0.1:8080/ignition?uuid=${uuid}&mac=${mac:hexhyp}', 'coreos.first_boot=yes', 'console=tty0', 'console=ttyS0'],
  );
  t.deepEqual(render({ ds: 'nocloud-net;s=http://{{ address }}:{{ port }}/nocloud/{{ mac }}/' }), [
    'ds=nocloud-net;s=http://10.0.0.1:8080/nocloud/52:54:00:12:34:56/',
  ]);
  t.deepEqual(render({ 'rancher.cloud_init.datasources': '[url:http://10.0.0.1:8080/cloud-config?mac=${net0/mac}]' }), [
    'rancher.cloud_init.datasources=[url:http://10.0.0.1:8080/cloud-config?mac=${net0/mac}]',
  ]);
  t.deepEqual(render({ 'x.y': '%2F,=:/[]{}?&;$' }), ['x.y=%2F,=:/[]{}?&;$']);
  // Kernel and initrd URLs are iPXE arguments too: settings and queries pass.
  t.true(ProfileSchema.safeParse({ id: 'p', kernel: 'http://10.0.0.1/k?arch=${buildarch}&v=1', initrd: ['https://mirror/i;x'] }).success);
  t.false(ProfileSchema.safeParse({ id: 'p', kernel: 'http://10.0.0.1/k ||' }).success);
  t.false(ProfileSchema.safeParse({ id: 'p', kernel: '/assets/${x}' }).success);
});

test('what would break the kernel line is refused at write time, naming the key', (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [{ a: 'x y' }, /whitespace/],
    [{ a: 'x\nimgfetch evil' }, /control character|whitespace/],
    [{ a: '"quoted"' }, /quote/],
    [{ a: 'tail\\' }, /backslash/],
    ['quiet || shell', /"\|\|"/],
    ['quiet ; shell', /";"/],
    ['quiet #rest', /comment/],
    ['quiet\nshell', /control character/],
    ['a {{ constructor }}', /whitespace|placeholder/],
    ['a={{constructor}}', /not a known placeholder/],
    [{ a: '{{ nope }}' }, /not a known placeholder/],
  ];
  for (const [cmdline, message] of cases) {
    const r = ProfileSchema.safeParse({ id: 'p', kernel: '/assets/k', cmdline });
    t.false(r.success, JSON.stringify(cmdline));
    t.regex(r.error?.issues.map((i) => i.message).join('; ') ?? '', message, JSON.stringify(cmdline));
  }
  t.deepEqual(
    cmdlineIssues({ good: 'x', bad: 'y z' }).map((i) => i.path),
    [['bad']],
  );
});

test('the string form: a placeholder stays in its argument; a value can never add an argument', (t) => {
  t.deepEqual(splitCmdline('a={{ vars.x ? }} b  c'), ['a={{ vars.x ? }}', 'b', 'c']);
  t.deepEqual(render('a={{ vars.x }} b', { x: 'one' }), ['a=one', 'b']);
  // Refused at write time when the profile's own var cannot be placed.
  t.false(ProfileSchema.safeParse({ id: 'p', kernel: '/assets/k', cmdline: 'a={{ vars.x }} b', vars: { x: 'one two' } }).success);
  // And a machine's var, when the machine names the profile.
  const db = {
    profiles: [{ id: 'p', kernel: '/assets/k', cmdline: 'pw={{ vars.x }}' }],
    machines: [{ mac: '52:54:00:00:00:01', profile: 'p', vars: { x: 'a b=c' } }],
  };
  t.throws(() => parseDb(db), { message: /machines\[52:54:00:00:00:01\]\.vars\.x: .*whitespace/ });
  t.true(MachineSchema.safeParse({ mac: '52:54:00:00:00:01', vars: { x: 'a b=c' } }).success, 'vars not placed in a cmdline may hold anything');
});

test('write-time references: missing profile, duplicate reservation, all problems reported with machines by MAC', (t) => {
  const err = t.throws(() =>
    parseDb({
      defaultProfile: 'nope',
      profiles: [{ id: 'p', kernel: '/assets/k' }],
      machines: [
        { mac: '52:54:00:00:00:01', profile: 'ghost', ip: '10.0.0.5' },
        { mac: '52-54-00-00-00-02', ip: '10.0.0.5' },
      ],
      groups: [{ id: 'g', profile: 'missing' }],
    }),
  );
  const issues = (err?.['detail' as keyof Error] as unknown as { issues: { field: string; message: string }[] }).issues;
  t.deepEqual(issues.map((i) => i.field).sort(), [
    'defaultProfile',
    'groups.0.profile',
    'machines[52:54:00:00:00:01].profile',
    'machines[52:54:00:00:00:02].ip',
  ]);
  t.regex(issues.find((i) => i.field.endsWith('.ip'))!.message, /already reserved by machine 52:54:00:00:00:01/);
});
