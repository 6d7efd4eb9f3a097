// The JavaScript client library (clients/js) in Debian's Chromium against the
// running local stack, which tests/browser.rs starts with a 2-second idle
// limit (IDLE_SECS). The page is the console's origin, which serves the
// library as /client.js (the console's own connection uses it).
//
//   CONSOLE_URL, EDGE_URL, API_URL, IDLE_SECS, CHROMIUM, BROWSER_DEPS

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { launchChromium, required } from './launch.js';

const CONSOLE_URL = required('CONSOLE_URL');
const EDGE_URL = required('EDGE_URL');
const API_URL = required('API_URL');
const IDLE_MS = Number(required('IDLE_SECS')) * 1000;

let browser;
let page;

before(async () => {
  browser = await launchChromium();
  page = await browser.newPage();
  page.setDefaultTimeout(20_000);
  await page.goto(CONSOLE_URL);
});

after(async () => {
  await browser?.close();
});

test('in the browser: a message between two clients, the idle close survived, a refused handshake given up', async () => {
  const result = await page.evaluate(async ({ edge, api, idleMs }) => {
    const { connect } = await import('/client.js');
    const log = [];
    const waitFor = (ready, what, ms = 15_000) => new Promise((resolve, reject) => {
      const started = Date.now();
      const poll = () => {
        if (ready()) resolve();
        else if (Date.now() - started > ms) reject(new Error(`timed out waiting for ${what}: ${JSON.stringify(log)}`));
        else setTimeout(poll, 20);
      };
      poll();
    });
    const track = (name, options) => {
      const seen = { states: [], messages: [] };
      const client = connect(edge, {
        baseMs: 200,
        ...options,
        onState: (state, detail) => { seen.states.push({ state, ...detail }); log.push([name, state, detail.code ?? null]); },
        onMessage: (frame) => seen.messages.push(frame),
      });
      return { client, seen };
    };
    const peer = track('peer', { keepaliveMs: idleMs / 3 });
    const away = track('away', { keepaliveMs: 3_600_000 });
    const opens = (seen) => seen.states.filter((s) => s.state === 'open').length;
    await waitFor(() => opens(peer.seen) === 1 && opens(away.seen) === 1, 'both open');
    away.client.send('hello');
    await waitFor(() => peer.seen.messages.length === 1, 'the message');
    await waitFor(() => away.seen.states.some((s) => s.state === 'reconnecting'), 'the idle close', idleMs * 3);
    const drop = away.seen.states.find((s) => s.state === 'reconnecting');
    const queued = away.client.send('while away');
    await waitFor(() => opens(away.seen) === 2, 'the reopen');
    await waitFor(() => peer.seen.messages.some((m) => m.data === 'while away'), 'the queued message');
    const peerReconnected = peer.seen.states.some((s) => s.state === 'reconnecting');

    const states = [];
    const refused = connect(api, { baseMs: 20, maxAttempts: 3, onState: (state, detail) => states.push({ state, ...detail }) });
    await waitFor(() => refused.state === 'closed', 'the give-up');
    peer.client.close();
    away.client.close();
    return {
      firstMessage: peer.seen.messages[0].data,
      dropCode: drop.code,
      queued,
      peerReconnected,
      refusedReason: states.at(-1).reason,
      refusedAttempts: states.filter((s) => s.state === 'connecting').length,
    };
  }, { edge: EDGE_URL, api: API_URL, idleMs: IDLE_MS });
  assert.equal(result.firstMessage, 'hello');
  assert.equal(result.dropCode, 1001);
  assert.equal(result.queued, 'queued');
  assert.equal(result.peerReconnected, false, 'the keepalive held the peer past the idle limit');
  assert.match(result.refusedReason, /gave up after 3 attempts/);
  assert.equal(result.refusedAttempts, 3);
});
