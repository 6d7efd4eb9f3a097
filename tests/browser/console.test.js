// The console in a real browser: Debian's Chromium driven by playwright-core,
// against the running local stack. tests/browser.rs starts the stack, installs
// playwright-core (npm ci) and runs this file with node's test runner:
//
//   CONSOLE_URL  the console, http://127.0.0.1:P/
//   EDGE_URL     the edge, ws://127.0.0.1:Q/
//   API_URL      the API layer, ws://127.0.0.1:R/<stage> (needs x-api-key)
//   SIGNED_IN_CONSOLE_URL  the console of a second stack, with sign-in on
//   CHROMIUM     the browser binary (default /usr/bin/chromium)
//   BROWSER_DEPS the folder whose node_modules holds playwright-core
//   SCREENSHOT_DIR where the screenshots go
//
// The tests run in order on one stack; each closes its pages before the next.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

import { launchChromium, required } from './launch.js';

const CONSOLE_URL = required('CONSOLE_URL');
const EDGE_URL = required('EDGE_URL');
const API_URL = required('API_URL');
const SIGNED_IN_CONSOLE_URL = required('SIGNED_IN_CONSOLE_URL');
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR;

/** Every wait in these tests is bounded by this. */
const WAIT_MS = 15_000;

let browser;

before(async () => {
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
});

/** A page of the console, loaded and ready (the stack's info read). */
async function openConsole(context, query = '', consoleUrl = CONSOLE_URL) {
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (!['127.0.0.1', 'localhost'].includes(url.hostname) && url.protocol !== 'data:') {
      problems.push(`fetched from elsewhere: ${request.url()}`);
    }
  });
  page.problems = problems;
  await page.goto(new URL(query, consoleUrl).href);
  await page.locator('body[data-ready="true"]').waitFor();
  return page;
}

async function connect(page) {
  await page.click('#connect');
  await page.locator('#state[data-state="open"]').waitFor();
}

/** The text of the newest log line of `kind`, once there is one. */
async function newest(page, kind) {
  const line = page.locator(`#log .frame[data-kind="${kind}"]`).first();
  await line.waitFor();
  return line.innerText();
}

/** A whole-page screenshot, when SCREENSHOT_DIR is set. */
async function screenshot(page, name) {
  if (!SCREENSHOT_DIR) return;
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, name) });
}

/** Two pages' screenshots side by side, as one PNG. */
async function sideBySide(context, pages, name) {
  if (!SCREENSHOT_DIR) return;
  const shots = await Promise.all(pages.map((page) => page.screenshot()));
  const { width, height } = pages[0].viewportSize();
  const sheet = await context.newPage();
  await sheet.setViewportSize({ width: width * pages.length + 8 * (pages.length - 1), height });
  const images = shots.map((png) => `<img src="data:image/png;base64,${png.toString('base64')}" width="${width}" height="${height}">`);
  await sheet.setContent(`<body style="margin:0;display:flex;gap:8px;background:#888">${images.join('')}</body>`);
  await sheet.locator('img').last().evaluate((img) => img.decode());
  await screenshot(sheet, name);
  await sheet.close();
}

function assertNoProblems(...pages) {
  for (const page of pages) assert.deepEqual(page.problems, [], 'the page logged errors or fetched from elsewhere');
}

// First, so no other connection is open: `sent` must say it reached exactly one.
test('two pages connect through the edge and a message sent in one appears in the other', async () => {
  const context = await browser.newContext({ viewport: { width: 640, height: 800 } });
  try {
    const alice = await openConsole(context);
    const bob = await openConsole(context);
    assert.equal(await alice.inputValue('#url'), EDGE_URL, 'the URL field defaults to the local edge');
    // Alice uses the keyboard only: Enter in the URL field connects, Ctrl+Enter sends.
    await alice.focus('#url');
    await alice.keyboard.press('Enter');
    await alice.locator('#state[data-state="open"]').waitFor();
    await connect(bob);

    await alice.fill('#message', '{"text": "hello from Alice", "n": 1}');
    await alice.focus('#message');
    await alice.keyboard.press('Control+Enter');

    const received = await newest(bob, 'message');
    assert.match(received, /hello from Alice/);
    assert.match(received, /from \S+=/, 'the message names its sender (a connection id)');
    assert.match(await newest(alice, 'sent'), /reached 1 other connection\b/);
    assert.match(await newest(alice, 'sendmessage'), /"action":"sendmessage","data":\{"text":"hello from Alice","n":1\}/);
    assert.equal(await alice.locator('#log .frame[data-kind="message"]').count(), 0, 'the sender does not get its own message');
    await sideBySide(context, [alice, bob], 'console-exchange.png');
    assertNoProblems(alice, bob);
  } finally {
    await context.close();
  }
});

test('ping shows a pong with the measured round trip', async () => {
  const context = await browser.newContext();
  try {
    const page = await openConsole(context);
    await connect(page);
    await page.click('#ping');
    assert.match(await newest(page, 'pong'), /round trip \d+\.\d ms/);
    assert.match(await newest(page, 'ping'), /\{"action":"ping"\}/);
    // Disconnect closes with 1000: the client library's advice is to stay closed.
    await page.click('#disconnect');
    await page.locator('#state[data-state="closed"][data-code="1000"]').waitFor();
    assert.match(await page.innerText('#state'), /An app on clients\/js stays closed/);
    assertNoProblems(page);
  } finally {
    await context.close();
  }
});

test('invalid JSON shows the invalid_json error and the connection stays usable', async () => {
  const context = await browser.newContext();
  try {
    const page = await openConsole(context);
    await connect(page);
    await page.fill('#message', 'not json');
    await page.click('#send-raw');
    const error = page.locator('#log .frame[data-kind="error"]').first();
    await error.waitFor();
    assert.equal(await error.locator('.code').innerText(), 'invalid_json');
    assert.match(await error.innerText(), /not valid JSON/);
    await page.click('#ping');
    await newest(page, 'pong');
    assert.equal(await page.getAttribute('#state', 'data-state'), 'open');
    assertNoProblems(page);
  } finally {
    await context.close();
  }
});

test('a message over 128 KB shows the 1009 close and what it means', async () => {
  const context = await browser.newContext();
  try {
    const page = await openConsole(context);
    await connect(page);
    await page.fill('#message', 'x'.repeat(130 * 1024));
    await page.click('#send-raw');
    await page.locator('#state[data-state="closed"][data-code="1009"]').waitFor();
    const state = await page.innerText('#state');
    assert.match(state, /Closed: 1009/);
    assert.match(state, /Message too big/);
    assert.match(state, /128 KB/);
    assert.match(state, /An app on clients\/js reconnects by itself/, 'the client library\'s advice for the code');
    assert.match(await newest(page, 'close'), /1009/);
    assert.match(await newest(page, 'raw'), /130\.0 KB/, 'the log shows the size, not 130 KB of text');
    assert.ok(await page.isDisabled('#send'), 'nothing can be sent on a closed connection');
    assertNoProblems(page);
  } finally {
    await context.close();
  }
});

/** The live view's count for `route`, 0 when the route has no row yet. */
async function routeCount(page, route) {
  const cell = page.locator(`#routes-body tr[data-route="${route}"] .count`);
  return (await cell.count()) === 0 ? 0 : Number(await cell.innerText());
}

test('the live view counts the invocations the page caused', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  try {
    const page = await openConsole(context);
    await page.locator('#live[data-stream="live"]').waitFor();
    assert.equal(await page.getAttribute('#live', 'data-scope'), 'local');
    const pingsBefore = await routeCount(page, 'ping');
    const connectsBefore = await routeCount(page, '$connect');
    const open = Number(await page.innerText('#count-connections'));

    await connect(page);
    const pings = 3;
    for (let i = 1; i <= pings; i += 1) {
      await page.click('#ping');
      await page.locator('#log .frame[data-kind="pong"]').nth(i - 1).waitFor();
    }
    await page.waitForFunction(
      ([before, want]) => Number(document.querySelector('#routes-body tr[data-route="ping"] .count')?.textContent ?? 0) === before + want,
      [pingsBefore, pings],
      { timeout: WAIT_MS },
    );
    assert.equal(await routeCount(page, 'ping'), pingsBefore + pings);
    assert.equal(await routeCount(page, '$connect'), connectsBefore + 1);
    assert.equal(Number(await page.innerText('#count-connections')), open + 1);
    assert.match(await page.innerText('#events'), /invoked ping → ok in \d+ ms/);

    // What the page counted is what the stack says.
    const snapshot = await (await fetch(new URL('snapshot', CONSOLE_URL))).json();
    assert.equal(snapshot.invocationsByRoute.ping.count, pingsBefore + pings);
    assert.equal(Number(await page.innerText('#count-invocations')), snapshot.invocations);

    await page.fill('#message', '{"text": "watch the live view"}');
    await page.click('#send');
    await newest(page, 'sent');
    await page.locator('#routes-body tr[data-route="sendmessage"]').waitFor();
    await screenshot(page, 'console-live.png');
    await page.setViewportSize({ width: 420, height: 900 });
    await screenshot(page, 'console-narrow.png');
    assertNoProblems(page);
  } finally {
    await context.close();
  }
});

test('a direct connection without the key is refused, and the live view shows the 403', async () => {
  const context = await browser.newContext();
  try {
    const page = await openConsole(context, `?url=${encodeURIComponent(API_URL)}`);
    assert.equal(await page.getAttribute('#live', 'data-scope'), 'local', 'the API layer is part of the local stack');
    await page.click('#connect');
    await page.locator('#state[data-state="closed"]').waitFor();
    const state = await page.innerText('#state');
    assert.match(state, /Could not connect: 1006/);
    assert.match(state, /x-api-key/);
    const refused = page.locator('#events li[data-type="handshakeRefused"]').first();
    await refused.waitFor();
    assert.match(await refused.innerText(), /handshake refused 403/);
    // Chromium reports the refused handshake on the console itself; that is the point here.
    page.problems = page.problems.filter((p) => !/WebSocket connection .* failed/.test(p));
    assertNoProblems(page);
  } finally {
    await context.close();
  }
});

test('?url= pointing elsewhere shows the live view as local-only', async () => {
  const context = await browser.newContext();
  try {
    const deployed = 'wss://d111111abcdef8.cloudfront.net/';
    const page = await openConsole(context, `?url=${encodeURIComponent(deployed)}`);
    assert.equal(await page.inputValue('#url'), deployed);
    assert.equal(await page.getAttribute('#live', 'data-scope'), 'remote');
    const notice = page.locator('#live-scope');
    assert.ok(await notice.isVisible());
    assert.match(await notice.innerText(), /Local only: wss:\/\/d111111abcdef8\.cloudfront\.net\/ is not this machine's stack/);

    // Back to the local edge: the live view applies again.
    await page.fill('#url', EDGE_URL);
    assert.equal(await page.getAttribute('#live', 'data-scope'), 'local');
    assert.ok(!(await notice.isVisible()));
    assertNoProblems(page);
  } finally {
    await context.close();
  }
});

test('with sign-in on, a page without a user is refused with 401 and two signed-in users see who wrote', async () => {
  const context = await browser.newContext({ viewport: { width: 640, height: 800 } });
  try {
    const anonymous = await openConsole(context, '', SIGNED_IN_CONSOLE_URL);
    await anonymous.click('#connect');
    const refused = anonymous.locator('#state[data-state="closed"]');
    await refused.waitFor();
    assert.match(await anonymous.innerText('#state'), /Could not connect/);
    await anonymous.locator('#events li', { hasText: 'handshake refused 401' }).first().waitFor();

    const alice = await openConsole(context, '', SIGNED_IN_CONSOLE_URL);
    const bob = await openConsole(context, '', SIGNED_IN_CONSOLE_URL);
    await alice.fill('#user', 'alice');
    await bob.fill('#user', 'bob');
    await connect(alice);
    await connect(bob);
    assert.doesNotMatch(await alice.innerText('#state'), /token=ey/, 'the token is not shown');
    await alice.fill('#message', '{"text": "signed hello"}');
    await alice.click('#send');
    assert.match(await newest(bob, 'message'), /from alice \(\S+=\).*signed hello/);
    await sideBySide(context, [alice, bob], 'console-sign-in.png');
    assertNoProblems(alice, bob);
  } finally {
    await context.close();
  }
});
