import test from 'ava';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildGrubContext, grubEchoText, grubQuote, parseGrubMachinePath, peSignature, renderGrubEntry, renderGrubRetry } from '../../src/boot/grub.js';
import { createRenderer } from '../../src/http/render.js';
import { parseDb } from '../../src/store/schema.js';

const server = { address: '10.99.0.1', port: 8080 };
const TEMPLATES = fileURLToPath(new URL('../../templates', import.meta.url));
const db = parseDb({
  profiles: [
    {
      id: 'os',
      kernel: '/assets/os/vmlinuz',
      initrd: ['/assets/os/initrd.img', '/assets/extra.cpio'],
      cmdline: { console: 'ttyS0', ds: '[url:http://{{ address }}:{{ port }}/cloud-config?mac={{ mac }}]', quiet: '' },
    },
    { id: 'web', kernel: 'http://mirror.example/vmlinuz' },
  ],
});
const os = db.profiles[0]!;

test('the entry script sources the per-machine script over tftp and retries itself', (t) => {
  const text = renderGrubEntry(server, 15);
  t.true(text.includes('source (tftp,10.99.0.1)/grub/machines/$grub_cpu/$net_default_mac.cfg'));
  t.true(text.includes('sleep 15'));
  t.true(text.trimEnd().endsWith('configfile (tftp,10.99.0.1)/grub/grub.cfg'));
});

test('per-machine paths parse only in the exact form grub asks for', (t) => {
  t.deepEqual(parseGrubMachinePath('grub/machines/x86_64/52:54:00:12:34:56.cfg'), { grubCpu: 'x86_64', mac: '52:54:00:12:34:56' });
  t.deepEqual(parseGrubMachinePath('grub/machines/arm64/52:54:00:AB:34:56.cfg'), { grubCpu: 'arm64', mac: '52:54:00:ab:34:56' });
  t.is(parseGrubMachinePath('grub/machines/x86_64/../../etc/passwd.cfg'), undefined);
  t.is(parseGrubMachinePath('grub/machines/x86_64/52:54:00:12:34.cfg'), undefined);
  t.is(parseGrubMachinePath('grub/grub.cfg'), undefined);
});

test('the context quotes every kernel argument and names files as tftp paths', (t) => {
  const c = buildGrubContext(server, { mac: '52:54:00:12:34:56' }, os, undefined, 'default', { secureBoot: true });
  t.is(c.kernel.path, '(tftp,10.99.0.1)/assets/os/vmlinuz');
  t.is(c.initrd_paths, '(tftp,10.99.0.1)/assets/os/initrd.img (tftp,10.99.0.1)/assets/extra.cpio');
  t.is(c.kernel_args, "'console=ttyS0' 'ds=[url:http://10.99.0.1:8080/cloud-config?mac=52:54:00:12:34:56]' 'quiet'");
  t.true(c.secure_boot);
});

test('http(s) kernels are refused for grub with the reason', (t) => {
  const err = t.throws(() => buildGrubContext(server, { mac: '52:54:00:12:34:56' }, db.profiles[1]!, undefined, 'default', { secureBoot: false }));
  t.regex(err!.message, /tftp only \(no http module\)/);
});

test('values that could break out of a quote are refused, not placed', (t) => {
  t.throws(() => grubQuote("a'b"), { message: /contains a quote/ });
  t.throws(() => grubQuote('a b'));
  // Inside single quotes grub keeps every character literal; only a quote could end them.
  t.is(grubQuote('$(x)'), "'$(x)'");
  t.is(grubQuote('console=ttyS0'), "'console=ttyS0'");
  t.is(grubEchoText("it's $bad; rm"), "'it?s ?bad? rm'");
});

test('the shipped grub template renders a script grub runs: echo, linux, initrd, boot, retry', (t) => {
  const renderer = createRenderer(TEMPLATES);
  const c = buildGrubContext(server, { mac: '52:54:00:12:34:56' }, os, undefined, 'machine-mac', { secureBoot: false });
  const script = renderer.render('profile.grub.njk', { ...c });
  const lines = script.split('\n').filter((l) => l && !l.startsWith('#'));
  t.deepEqual(lines, [
    "echo 'netboot-appliance: booting os on 52:54:00:12:34:56 with grub'",
    `linux (tftp,10.99.0.1)/assets/os/vmlinuz ${c.kernel_args}`,
    `initrd ${c.initrd_paths}`,
    'boot',
    "echo 'netboot-appliance: booting os failed, retrying in 20 seconds'",
    'sleep 20',
    'configfile (tftp,10.99.0.1)/grub/grub.cfg',
  ]);
});

test('the retry script prints the reason and starts over', (t) => {
  const text = renderGrubRetry(server, 'profile os: /assets/os/vmlinuz is missing', 5);
  t.true(text.includes("echo 'netboot-appliance: profile os: /assets/os/vmlinuz is missing'"));
  t.true(text.includes('sleep 5'));
  t.true(text.includes('configfile (tftp,10.99.0.1)/grub/grub.cfg'));
});

test('peSignature tells signed from unsigned PE images (real Debian and iPXE binaries)', (t) => {
  const head = (p: string) => readFileSync(p).subarray(0, 4096);
  const kernels = readdirSync('/boot').filter((n) => /^vmlinuz-.*-amd64$/.test(n));
  t.true(kernels.length > 0, 'no Debian kernel in /boot (scripts/install installs linux-image-cloud-amd64)');
  // Debian's kernels are signed for Secure Boot (linux-image-*-amd64, signed by Debian).
  t.like(peSignature(head(`/boot/${kernels[0]}`)), { signed: true, machine: 0x8664 });
  // Debian's iPXE build is not signed: what Secure Boot firmware refuses.
  t.like(peSignature(head('/usr/lib/ipxe/snponly.efi')), { signed: false, machine: 0x8664 });
  t.is(peSignature(Buffer.from('#!ipxe\n')), undefined);
  t.is(peSignature(Buffer.alloc(0)), undefined);
});
