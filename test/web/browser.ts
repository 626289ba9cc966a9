/**
 * Headless Chromium for the console tests: Debian's `chromium` (scripts/install), driven by
 * playwright-core over its pipe; nothing downloads a browser. Each launch gets a fresh profile
 * directory, removed afterwards. With `netns`, the browser runs inside that network namespace
 * (the VM lab's), so it reaches the appliance on the lab bridge.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type ConsoleMessage, type Page } from 'playwright-core';

/** The system browser (Debian package `chromium`). */
export const CHROMIUM = '/usr/bin/chromium';

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

/** A running browser context plus what went wrong in its pages' consoles. */
export interface TestBrowser {
  context: BrowserContext;
  /** Console errors and uncaught exceptions of every page, as text. */
  errors: string[];
  newPage(viewport?: { width: number; height: number }): Promise<Page>;
  close(): Promise<void>;
}

/** Launch Chromium (fails loudly when the package is missing: no silent skip). */
export async function launchBrowser(options: { netns?: string } = {}): Promise<TestBrowser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (scripts/install)`);
  const dir = await mkdtemp(path.join(tmpdir(), 'netboot-chromium-'));
  let executablePath = CHROMIUM;
  if (options.netns) {
    // `ip netns exec` keeps the pipe file descriptors playwright talks over.
    executablePath = path.join(dir, 'chromium-in-netns');
    await writeFile(executablePath, `#!/bin/sh\nexec ip netns exec ${options.netns} ${CHROMIUM} "$@"\n`);
    await chmod(executablePath, 0o755);
  }
  const context = await chromium.launchPersistentContext(path.join(dir, 'profile'), {
    executablePath,
    headless: true,
    args: FLAGS,
    viewport: { width: 1280, height: 800 },
    timeout: 60_000,
  });
  const errors: string[] = [];
  const watch = (page: Page): void => {
    page.on('console', (m: ConsoleMessage) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()} (${m.location().url})`);
    });
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  };
  context.pages().forEach(watch);
  context.on('page', watch);
  return {
    context,
    errors,
    async newPage(viewport) {
      const page = await context.newPage();
      if (viewport) await page.setViewportSize(viewport);
      return page;
    },
    async close() {
      await context.close().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Log in through the console's login form. */
export async function logIn(page: Page, baseUrl: string, token: string): Promise<void> {
  await page.goto(`${baseUrl}/`);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('navigation', { name: 'main' }).waitFor();
}
