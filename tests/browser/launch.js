// Debian's Chromium through playwright-core, as every browser test launches
// it: headless, no sandbox, no background networking, a fresh profile.
import { createRequire } from 'node:module';
import path from 'node:path';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const deps = process.env.BROWSER_DEPS || path.dirname(new URL(import.meta.url).pathname);
const { chromium } = createRequire(path.join(deps, 'package.json'))('playwright-core');

/** A browser with a fresh temporary profile (removed on close). */
export function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
}

/** The value of environment variable `name`, or an error naming how to run the tests. */
export function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set; run these tests with cargo test -p e2e --test browser`);
  return value;
}
