/**
 * The web console (web/) in a real headless Chromium against the real HTTP app on 127.0.0.1:0:
 * login with the token, a wrong token refused, the machines table updating live from real boot
 * requests, a profile edit that the next /ipxe reflects, a bad edit refused at the field with
 * nothing changed, a conflicting edit shown rather than overwritten, a phone-width layout, and
 * no console errors. The VM-lab version (a real firmware boot) is test/e2e/console.test.ts.
 */
import test from 'ava';
import type { Page } from 'playwright-core';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createMemoryStore } from '../../src/store/store.js';
import { createDefaultDb } from '../../src/store/defaults.js';
import { addRancherAssets, startHarness, TOKEN, type Harness } from '../http/helpers.js';
import { launchBrowser, logIn, type TestBrowser } from './browser.js';

const MAC = '52:54:00:ee:00:01';

let browser: TestBrowser;
test.before(async () => {
  browser = await launchBrowser();
});
test.after.always(async () => {
  await browser?.close();
});

async function harness(t: { teardown(fn: () => Promise<void>): void }): Promise<Harness> {
  const h = await startHarness({ store: createMemoryStore(createDefaultDb()), console: { tokenFile: '/var/lib/netboot-appliance/api-token' } });
  await addRancherAssets(h.assetsDir);
  t.teardown(() => h.close());
  return h;
}

/** Poll `check` (the page's CSP forbids evaluating strings, so no waitForFunction) for up to 10 s. */
async function eventually(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`condition not met within 10 s: ${check.toString()}`);
}

/** Errors logged by `page` since `from` (index into browser.errors). */
function newErrors(from: number): string[] {
  return browser.errors.slice(from);
}

test.serial('login: the token file is named, a wrong token is refused and nothing is shown, the right one opens the console', async (t) => {
  const h = await harness(t);
  const page = await browser.newPage();
  t.teardown(() => page.close());
  const before = browser.errors.length;
  await page.goto(`${h.url}/`);
  t.is(await page.locator('.token-file').textContent(), '/var/lib/netboot-appliance/api-token');
  await page.getByLabel('API token').fill('not-the-token-0123456789');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').filter({ hasText: 'That token was refused' }).waitFor();
  t.is(await page.getByRole('navigation', { name: 'main' }).count(), 0);
  t.is(await page.evaluate('sessionStorage.length'), 0, 'a refused token is not kept');
  // The only console line allowed here is the browser's own note of the expected 401.
  t.deepEqual(
    newErrors(before).filter((e) => !/status of 401 \(Unauthorized\)/.test(e)),
    [],
  );
  t.true(newErrors(before).length <= 1);

  const mark = browser.errors.length;
  await page.getByLabel('API token').fill(TOKEN);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Machines' }).waitFor();
  t.is(await page.evaluate("sessionStorage.getItem('netboot.apiToken')"), TOKEN);
  t.is(await page.evaluate('localStorage.length'), 0, 'the token is never kept beyond the tab');
  // A reload keeps the session; logging out forgets the token.
  await page.reload();
  await page.getByRole('heading', { name: 'Machines' }).waitFor();
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByLabel('API token').waitFor();
  t.is(await page.evaluate('sessionStorage.length'), 0);
  t.deepEqual(newErrors(mark), []);
});

test.serial('machines: a machine appears in the table and its timeline grows live as it requests its boot files', async (t) => {
  const h = await harness(t);
  const page = await browser.newPage();
  t.teardown(() => page.close());
  const before = browser.errors.length;
  await logIn(page, h.url, TOKEN);
  await page.getByText('No machines yet').waitFor();
  // What a booting machine does over HTTP, after DHCP told the appliance its address.
  h.events.record({ mac: MAC, type: 'dhcp-offer', ip: '10.0.0.60', detail: { arch: 'bios', port: 67 } });
  t.is((await h.req('GET', `/ipxe?mac=${MAC}&platform=pcbios`)).status, 200);
  const row = page.locator(`tr[data-mac="${MAC}"]`);
  await row.waitFor({ timeout: 10_000 });
  t.regex((await row.textContent()) ?? '', /rancheros \(default\).*discovered|discovered.*rancheros \(default\)/s);
  await row.getByRole('link', { name: MAC }).click();
  await page.getByText('● live').waitFor();
  const items = page.locator('ol.timeline li');
  await t.notThrowsAsync(items.filter({ hasText: 'http-script' }).waitFor());
  const count = await items.count();
  t.true(count >= 2, `timeline shows ${count} events`);
  // Live: a new request shows up without reloading the page.
  t.is((await h.req('GET', `/assets/rancheros/v1.5.8/vmlinuz?mac=${MAC}`)).status, 200);
  await items.filter({ hasText: 'http-asset' }).waitFor({ timeout: 10_000 });
  t.is(await items.count(), count + 1);
  t.deepEqual(newErrors(before), []);
});

async function openProfile(page: Page, url: string): Promise<void> {
  await logIn(page, url, TOKEN);
  await page.getByRole('link', { name: 'Profiles' }).click();
  await page.getByRole('link', { name: 'rancheros' }).click();
  await page.locator('#f-kernel').waitFor();
}

test.serial('editor: a saved profile edit is what the next /ipxe serves', async (t) => {
  const h = await harness(t);
  const page = await browser.newPage();
  t.teardown(() => page.close());
  const before = browser.errors.length;
  t.false((await h.req('GET', `/ipxe?mac=${MAC}`)).text.includes('netboot.console_edit'));
  await openProfile(page, h.url);
  const cmdline = JSON.parse(await page.locator('#f-cmdline').inputValue()) as Record<string, unknown>;
  await page.locator('#f-cmdline').fill(JSON.stringify({ ...cmdline, 'netboot.console_edit': 'saved-7c1' }, null, 2));
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('status').filter({ hasText: 'Saved profile rancheros.' }).waitFor();
  t.true((await h.req('GET', `/ipxe?mac=${MAC}`)).text.includes('netboot.console_edit=saved-7c1'));
  t.like(await h.store.getProfile('rancheros'), { cmdline: { 'netboot.console_edit': 'saved-7c1' } });
  t.deepEqual(newErrors(before), []);
});

test.serial('editor: a bad edit shows the schema error at the field, cannot be saved, and changes nothing', async (t) => {
  const h = await harness(t);
  const page = await browser.newPage();
  t.teardown(() => page.close());
  const before = browser.errors.length;
  const stored = await h.store.getProfile('rancheros');
  const script = (await h.req('GET', `/ipxe?mac=${MAC}`)).text;
  await openProfile(page, h.url);
  await page.locator('#f-kernel').fill('/assets/../../etc/shadow');
  const err = page.locator('[data-field="kernel"] .field-error');
  await err.waitFor();
  t.regex((await err.textContent()) ?? '', /^must be \/assets\/<path> of plain path characters \(no \. or \.\. segments\)/);
  t.is(await page.locator('#f-kernel').getAttribute('aria-invalid'), 'true');
  t.true(await page.getByRole('button', { name: 'Save' }).isDisabled());
  // JSON that does not parse is an error at its own field too.
  await page.locator('#f-cmdline').fill('{"console": ');
  await page.locator('[data-field="cmdline"] .field-error').filter({ hasText: 'is not valid JSON' }).waitFor();
  // Pressing Enter in a field cannot submit it either.
  await page.locator('#f-kernel').press('Enter');
  await page.waitForTimeout(300);
  t.deepEqual(await h.store.getProfile('rancheros'), stored);
  t.is((await h.req('GET', `/ipxe?mac=${MAC}`)).text, script);
  t.deepEqual(newErrors(before), []);
});

test.serial('editor: a profile changed underneath is shown as a conflict instead of overwritten', async (t) => {
  const h = await harness(t);
  const page = await browser.newPage();
  t.teardown(() => page.close());
  const before = browser.errors.length;
  await openProfile(page, h.url);
  await page.locator('#f-name').fill('edited in the console');
  const theirs = { ...(await h.store.getProfile('rancheros'))!, name: 'edited on disk' };
  await h.store.putProfile(theirs);
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('alert').filter({ hasText: 'Changed underneath' }).waitFor();
  t.is((await h.store.getProfile('rancheros'))?.name, 'edited on disk');
  await page.getByRole('button', { name: 'Discard mine, load theirs' }).click();
  t.is(await page.locator('#f-name').inputValue(), 'edited on disk');
  t.deepEqual(newErrors(before), []);
});

test.serial('phone width: the machines table becomes cards and nothing scrolls sideways', async (t) => {
  const h = await harness(t);
  h.events.record({ mac: MAC, type: 'dhcp-offer', ip: '10.0.0.60', detail: { arch: 'efi-x64' } });
  const page = await browser.newPage({ width: 390, height: 844 });
  t.teardown(() => page.close());
  const before = browser.errors.length;
  await logIn(page, h.url, TOKEN);
  await page.locator(`tr[data-mac="${MAC}"]`).waitFor();
  const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth');
  t.true(overflow <= 0, `page is ${overflow}px wider than the phone screen`);
  t.is(await page.evaluate("getComputedStyle(document.querySelector('table.machines thead')).position"), 'absolute');
  await page.getByRole('link', { name: 'Profiles' }).click();
  await page.getByRole('link', { name: 'rancheros' }).click();
  await page.locator('#f-kernel').waitFor();
  t.true((await page.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth')) <= 0, 'the editor scrolls sideways');
  t.deepEqual(newErrors(before), []);
});

test.serial('machines: filter, sort, and bulk delete of the selected discovered machines only', async (t) => {
  const h = await harness(t);
  await h.store.putMachine({ mac: '52:54:00:ee:00:0a', hostname: 'keep-declared', profile: 'rancheros' });
  // Discovered: machines whose agent reported facts before the operator declared them.
  for (const mac of ['52:54:00:ee:00:0b', '52:54:00:ee:00:0c', '52:54:00:ee:00:0d'])
    t.is((await h.req('POST', `/api/machines/${mac}/facts`, { body: { cpu: { count: 1 } } })).status, 201);
  const page = await browser.newPage();
  t.teardown(() => page.close());
  const before = browser.errors.length;
  page.on('dialog', (d) => void d.accept());
  await logIn(page, h.url, TOKEN);
  const rows = page.locator('table.machines tbody tr');
  await page.locator('tr[data-mac="52:54:00:ee:00:0d"]').waitFor();
  t.is(await rows.count(), 4);
  await page.getByLabel('Filter machines').fill('keep-decl');
  await eventually(async () => (await rows.count()) === 1);
  await page.getByLabel('Filter machines').fill('');
  await page.getByRole('button', { name: /^MAC/ }).click();
  await eventually(async () => (await rows.first().getAttribute('data-mac')) === '52:54:00:ee:00:0a');
  await page.getByRole('button', { name: /^MAC/ }).click();
  await eventually(async () => (await rows.first().getAttribute('data-mac')) === '52:54:00:ee:00:0d');
  // Declared machines have no checkbox: bulk delete touches discovered ones only.
  t.is(await page.locator('tr[data-mac="52:54:00:ee:00:0a"] input[type="checkbox"]').count(), 0);
  await page.getByLabel('select 52:54:00:ee:00:0b').check();
  await page.getByLabel('select 52:54:00:ee:00:0c').check();
  await page.getByRole('button', { name: 'Delete selected discovered (2)' }).click();
  await eventually(async () => (await rows.count()) === 2);
  const left = (await h.req('GET', '/api/console/machines', { headers: { authorization: `Bearer ${TOKEN}` } })).json as Array<{ mac: string }>;
  t.deepEqual(
    left.map((m) => m.mac),
    ['52:54:00:ee:00:0a', '52:54:00:ee:00:0d'],
  );
  t.deepEqual(newErrors(before), []);
});

test.serial('machines: the group a machine matched and why (the selector keys), in the table and on its timeline; unverified facts marked', async (t) => {
  const h = await harness(t);
  await h.store.putProfile({ id: 'big', kernel: '/assets/rancheros/v1.5.8/vmlinuz' });
  await h.store.putGroup({ id: 'qemu-big', profile: 'big', selector: { facts: ['dmi.vendor == QEMU', 'cpu.count >= 2'] } });
  const auth = { authorization: `Bearer ${TOKEN}` };
  // Verified (the API token) for one machine; a bare report, unverified, for another.
  t.is((await h.req('POST', `/api/machines/${MAC}/facts`, { headers: auth, body: { dmi: { vendor: 'QEMU' }, cpu: { count: 4 } } })).status, 201);
  const other = '52:54:00:ee:00:02';
  t.is((await h.req('POST', `/api/machines/${other}/facts`, { body: { dmi: { vendor: 'QEMU' }, cpu: { count: 4 } } })).status, 201);
  const page = await browser.newPage();
  t.teardown(() => page.close());
  const before = browser.errors.length;
  await logIn(page, h.url, TOKEN);
  const row = page.locator(`tr[data-mac="${MAC}"]`);
  await row.waitFor();
  t.is(await row.locator('td[data-label="Profile"] > div').textContent(), 'big (group qemu-big)');
  t.deepEqual(await row.locator('ul.why li').allTextContents(), ['facts: dmi.vendor == QEMU (got "QEMU")', 'facts: cpu.count >= 2 (got 4)']);
  const unverified = page.locator(`tr[data-mac="${other}"]`);
  t.regex((await unverified.locator('td[data-label="Profile"]').textContent()) ?? '', /^rancheros \(default\)/);
  t.is(await unverified.locator('td[data-label="Facts"] .badge').textContent(), 'unverified');
  await row.getByRole('link', { name: MAC }).click();
  const why = page.getByRole('list', { name: 'why this group' });
  await why.waitFor();
  t.deepEqual(await why.locator('li').allTextContents(), ['facts: dmi.vendor == QEMU (got "QEMU")', 'facts: cpu.count >= 2 (got 4)']);
  t.deepEqual(newErrors(before), []);
});

test.serial('assets, status and preview: missing files with the command that fetches them, boot files, what a machine would boot', async (t) => {
  const h = await startHarness({
    console: {
      tokenFile: '/x/api-token',
      status: () => ({
        dhcp: { mode: 'proxy', reason: 'auto: another dhcp server answered (10.0.0.2)' },
        warnings: ['boot file undionly.kpxe for bios not found'],
      }),
    },
  });
  t.teardown(() => h.close());
  await h.store.putMachine({ mac: MAC, hostname: 'preview-me' });
  const page = await browser.newPage();
  t.teardown(() => page.close());
  const before = browser.errors.length;
  await logIn(page, h.url, TOKEN);
  await page.getByRole('link', { name: 'Assets' }).click();
  await page.locator('.failure code').filter({ hasText: 'node bin/appliance fetch rancheros' }).first().waitFor();
  t.is(await page.locator('tr[data-profile="rancheros"] .error').count(), 2);
  await addRancherAssets(h.assetsDir);
  // The shipped debian-installer profile's files (fetch debian-installer) too.
  await mkdir(path.join(h.assetsDir, 'debian-installer', '12', 'amd64'), { recursive: true });
  for (const f of ['linux', 'initrd.gz']) await writeFile(path.join(h.assetsDir, 'debian-installer', '12', 'amd64', f), 'x');
  await page.getByRole('button', { name: 'compute' }).click();
  await page
    .locator('tr[data-profile="rancheros"] .hash')
    .first()
    .filter({ hasText: /^[0-9a-f]{64}$/ })
    .waitFor();
  t.is(await page.locator('.failure').count(), 0);

  await page.getByRole('link', { name: 'Status' }).click();
  await page.getByText('proxy: auto: another dhcp server answered (10.0.0.2)').waitFor();
  t.is(await page.locator('.warnings li').textContent(), 'boot file undionly.kpxe for bios not found');

  await page.goto(`${h.url}/#/edit/machines/${MAC}`);
  await page.locator('#f-hostname').waitFor();
  await page.getByText(`Preview what ${MAC} would boot`).click();
  const ipxe = page.locator('pre.ipxe');
  await ipxe.filter({ hasText: '#!ipxe' }).waitFor();
  t.true(((await ipxe.textContent()) ?? '').includes('/assets/rancheros/v1.5.8/vmlinuz'));
  t.regex((await page.locator('pre.cloud-config').textContent()) ?? '', /^#cloud-config/);
  t.deepEqual(h.events.list({ mac: MAC }), [], 'a preview is not a boot');
  t.deepEqual(newErrors(before), []);
});
