/**
 * The web console watching a real boot: the appliance (`node bin/appliance`) in the VM lab,
 * headless Chromium inside the lab's namespace logged in with the generated token, and a
 * SeaBIOS + iPXE ROM VM booting the test OS through it. The machine appears in the machines
 * table while it boots, and its timeline page, opened mid-boot, gains the later steps (kernel,
 * initrd, cloud-config, facts) live. Screenshots of both pages are written to the lab's work
 * directory, and to docs/ with NETBOOT_SCREENSHOTS=docs (the README shows those).
 * Run under the QEMU lock: `flock /tmp/netboot-qemu.lock npx ava test/e2e/console.test.ts`.
 */
import test from 'ava';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestOsAppliance, type LabAppliance } from '../../src/lab/appliance.js';
import { DEFAULT_CLOUD_CONFIG } from '../../src/lab/baseline.js';
import { buildTestInitrd, MARKERS } from '../../src/lab/initrd.js';
import { createLab, type Lab } from '../../src/lab/netns.js';
import { assertLabPrerequisites } from '../../src/lab/prereqs.js';
import { startVm, type Vm } from '../../src/lab/qemu.js';
import { APPLIANCE_HOME } from '../../src/config.js';
import { launchBrowser, logIn, type TestBrowser } from '../web/browser.js';

const MAC = '52:54:00:a5:12:01';
const BOOT_TIMEOUT_MS = 200_000;

let lab: Lab | undefined;
let appliance: (LabAppliance & { home: { dir: string } }) | undefined;
let browser: TestBrowser | undefined;
let vm: Vm | undefined;

test.before(async () => {
  assertLabPrerequisites('bios');
  const initrd = buildTestInitrd();
  lab = await createLab({ ipv6Router: true, keepWorkDir: process.env['NETBOOT_LAB_KEEP'] === '1' });
  appliance = await startTestOsAppliance(
    lab,
    { kernelPath: initrd.kernel.path, initrdPath: initrd.path, cloudConfig: DEFAULT_CLOUD_CONFIG },
    { name: 'console-appliance' },
  );
  browser = await launchBrowser({ netns: lab.netns });
});

test.after.always(async () => {
  await vm?.kill();
  await browser?.close();
  await appliance?.stop();
  await lab?.destroy();
});

test('a VM booting through the appliance appears in the machines table and its timeline updates live', async (t) => {
  t.timeout(BOOT_TIMEOUT_MS + 90_000);
  if (!lab || !appliance || !browser) throw new Error('the lab, the appliance or the browser did not start (see test.before)');
  const shots = process.env['NETBOOT_SCREENSHOTS'] === 'docs' ? join(APPLIANCE_HOME, 'docs') : lab.workDir;
  mkdirSync(shots, { recursive: true });
  // The appliance generated its token beside the database, as on a real install.
  const token = readFileSync(join(appliance.home.dir, 'api-token'), 'utf8').trim();
  const page = await browser.newPage();
  await logIn(page, appliance.baseUrl, token);
  await page.getByText('No machines yet').waitFor();

  vm = await startVm(lab, { firmware: 'bios', mac: MAC, timeoutMs: BOOT_TIMEOUT_MS + 30_000 });
  t.teardown(() => vm?.kill());
  // The table is live: the row comes from the event stream, with no reload.
  const row = page.locator(`tr[data-mac="${MAC}"]`);
  await row.waitFor({ timeout: 120_000 });
  t.log(`row appeared ${((performance.now() - vm.startedAt) / 1000).toFixed(1)} s after VM start: ${(await row.textContent())?.replace(/\s+/g, ' ')}`);

  await row.getByRole('link', { name: MAC }).click();
  await page.getByText('● live').waitFor();
  const items = page.locator('ol.timeline li');
  await items.first().waitFor();
  const early = await items.allTextContents();
  const serialEarly = vm.serial();
  // Opened mid-boot: the test OS has not fetched its cloud-config yet...
  t.false(serialEarly.includes(MARKERS.cloudConfigFetched), 'the VM finished before the timeline was opened; the test proves nothing live');
  t.false(
    early.some((s) => s.includes('http-cloud-config')),
    early.join('\n'),
  );
  // ...and the later steps arrive on the open page.
  await items.filter({ hasText: 'http-cloud-config' }).waitFor({ timeout: BOOT_TIMEOUT_MS });
  await vm.waitFor(new RegExp(MARKERS.done), 60_000);
  await items.filter({ hasText: 'facts' }).last().waitFor({ timeout: 30_000 });
  const all = await items.allTextContents();
  t.log(`timeline: ${early.length} events when opened, ${all.length} after the boot`);
  t.true(all.length > early.length);
  const order = ['dhcp-offer', 'http-script', 'http-asset', 'http-cloud-config', 'facts'].map((type) => all.findIndex((s) => s.includes(type)));
  t.true(
    order.every((i, k) => i >= 0 && (k === 0 || i > order[k - 1]!)),
    `boot steps out of order: ${order.join(' ')}\n${all.join('\n')}`,
  );
  t.true(all.some((s) => s.includes('file=/assets/vmlinuz')) && all.some((s) => s.includes('file=/assets/initrd.img')));
  // The summary above the timeline follows too: the facts the agent posted from inside the VM.
  await page.locator('dl.summary').filter({ hasText: '1 CPU' }).waitFor({ timeout: 15_000 });
  t.is(await page.locator('.failure').count(), 0, 'a clean boot shows no failure');
  await page.screenshot({ path: join(shots, 'console-timeline.png'), fullPage: true });

  await page.getByRole('link', { name: '← Machines' }).click();
  const done = page.locator(`tr[data-mac="${MAC}"]`);
  await done.filter({ hasText: 'lab-test-os (default)' }).waitFor();
  const text = (await done.textContent()) ?? '';
  t.true(text.includes('discovered') && text.includes('1 CPU'), text);
  t.regex(text, /10\.99\.\d+\.\d+/);
  await page.screenshot({ path: join(shots, 'console-machines.png') });
  // The same page on a phone: the table turns into cards, nothing scrolls sideways.
  await page.setViewportSize({ width: 390, height: 844 });
  t.true((await page.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth')) <= 0, 'the phone layout scrolls sideways');
  await page.screenshot({ path: join(shots, 'console-machines-phone.png') });
  t.deepEqual(browser.errors, [], 'console errors in the browser');
});
