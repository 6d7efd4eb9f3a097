// The client against the real local stack (run by tests/clients_js.rs, which
// starts the stack with a shortened idle limit and sets EDGE_URL, API_URL and
// IDLE_SECS): messages through the edge, keepalive under the idle limit,
// reconnect after the stack's 1001 with the queue flushed, give-up on refusal.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { connect } from '../src/index.js';

const EDGE_URL = process.env.EDGE_URL;
const API_URL = process.env.API_URL;
const IDLE_MS = Number(process.env.IDLE_SECS) * 1000;
if (!EDGE_URL || !API_URL || !IDLE_MS) throw new Error('EDGE_URL, API_URL and IDLE_SECS must be set (tests/clients_js.rs sets them)');

/** A client that records its states and messages, with waits on both. */
function client(options = {}) {
  const seen = { states: [], messages: [] };
  const waiters = [];
  const wake = () => {
    for (const w of waiters.slice()) if (w.ready()) { waiters.splice(waiters.indexOf(w), 1); w.resolve(); }
  };
  const c = connect(EDGE_URL, {
    baseMs: 200,
    ...options,
    onState: (state, detail) => { seen.states.push({ state, ...detail }); wake(); },
    onMessage: (frame) => { seen.messages.push(frame); wake(); },
  });
  const until = (ready, what, ms = 10_000) => new Promise((resolve, reject) => {
    if (ready()) { resolve(); return; }
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}; states: ${JSON.stringify(seen.states)}`)), ms);
    waiters.push({ ready, resolve: () => { clearTimeout(timer); resolve(); } });
  });
  return { c, seen, until };
}

const opened = (seen, n = 1) => () => seen.states.filter((s) => s.state === 'open').length >= n;

test('two clients through the edge: a message reaches the other once, with its id', async () => {
  const a = client();
  const b = client();
  await a.until(opened(a.seen), 'a open');
  await b.until(opened(b.seen), 'b open');
  a.c.send({ hello: 'from a' });
  await b.until(() => b.seen.messages.length >= 1, 'b to receive');
  assert.deepEqual(b.seen.messages[0].data, { hello: 'from a' });
  assert.equal(typeof b.seen.messages[0].id, 'string');
  a.c.close();
  b.c.close();
});

test('keepalive keeps a connection open past the idle limit', async () => {
  const kept = client({ keepaliveMs: IDLE_MS / 3 });
  await kept.until(opened(kept.seen), 'open');
  await new Promise((resolve) => setTimeout(resolve, IDLE_MS * 2.5));
  assert.equal(kept.c.state, 'open');
  assert.deepEqual(kept.seen.states.map((s) => s.state), ['connecting', 'open']);
  kept.c.close();
});

test('without keepalive the stack closes with 1001; the client reconnects and flushes what was sent meanwhile', async () => {
  const peer = client({ keepaliveMs: IDLE_MS / 3 });
  const idle = client({ keepaliveMs: 60 * 60 * 1000 });
  await peer.until(opened(peer.seen), 'peer open');
  await idle.until(opened(idle.seen), 'idle open');
  await idle.until(() => idle.seen.states.some((s) => s.state === 'reconnecting'), 'the idle close', IDLE_MS * 3);
  const drop = idle.seen.states.find((s) => s.state === 'reconnecting');
  assert.equal(drop.code, 1001, JSON.stringify(drop));
  assert.equal(idle.c.send('sent while away'), 'queued');
  await idle.until(opened(idle.seen, 2), 'reopened');
  await peer.until(() => peer.seen.messages.some((m) => m.data === 'sent while away'), 'the queued message at the peer');
  peer.c.close();
  idle.c.close();
});

test('a handshake the API refuses (no x-api-key: 403) is retried with backoff, then the client gives up', async () => {
  const states = [];
  const direct = connect(API_URL, {
    baseMs: 20,
    maxAttempts: 3,
    onState: (state, detail) => states.push({ state, ...detail }),
  });
  const deadline = Date.now() + 10_000;
  while (direct.state !== 'closed' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(direct.state, 'closed');
  assert.match(states.at(-1).reason, /gave up after 3 attempts/);
  assert.equal(states.filter((s) => s.state === 'connecting').length, 3);
});
