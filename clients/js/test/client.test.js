// The client's behaviour against a fake socket and a fake clock: reconnect
// and give-up, backoff, the queue, keepalive, de-duplication, the token.
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import * as client from '../src/index.js';
import { connect, ClientError, DEFAULTS, backoffDelay, closeAdvice, RecentIds, withToken } from '../src/index.js';
import { FakeSocket, FakeClock, settle, seeded } from './fakes.js';

const URL_ = 'wss://example.cloudfront.net/';

function start(options = {}) {
  const clock = new FakeClock();
  const states = [];
  const messages = [];
  const c = connect(URL_, {
    WebSocket: FakeSocket,
    clock,
    random: () => 0.5,
    onState: (state, detail) => states.push([state, detail]),
    onMessage: (frame) => messages.push(frame),
    ...options,
  });
  return { c, clock, states, messages };
}

beforeEach(() => FakeSocket.reset());

test('sends made while connecting are queued and flushed in order on open', async () => {
  const { c } = start();
  await settle();
  assert.equal(c.send('a'), 'queued');
  assert.equal(c.send({ b: 1 }), 'queued');
  FakeSocket.last().accept();
  assert.deepEqual(FakeSocket.last().sent, [
    '{"action":"sendmessage","data":"a"}',
    '{"action":"sendmessage","data":{"b":1}}',
  ]);
  assert.equal(c.send('c'), 'sent');
});

test('the queue is bounded: one frame over it is refused with queue_full, none is lost silently', async () => {
  const { c } = start({ queueLimit: 3 });
  await settle();
  for (let i = 0; i < 3; i += 1) c.send(i);
  assert.throws(() => c.send(3), (error) => error instanceof ClientError && error.code === 'queue_full');
  FakeSocket.last().accept();
  assert.equal(FakeSocket.last().sent.length, 3);
});

test('a 1001 (idle or 2-hour limit) reconnects after a jittered wait, and the queue survives', async () => {
  const { c, clock, states } = start();
  await settle();
  FakeSocket.last().accept();
  await clock.advance(DEFAULTS.stableMs);
  FakeSocket.last().serverClose(1001, 'Going away');
  const waiting = states.at(-1);
  assert.equal(waiting[0], 'reconnecting');
  // random() = 0.5 of the first ceiling (baseMs).
  assert.equal(waiting[1].delayMs, DEFAULTS.baseMs / 2);
  assert.equal(c.send('while away'), 'queued');
  assert.equal(FakeSocket.instances.length, 1);
  await clock.advance(DEFAULTS.baseMs / 2);
  assert.equal(FakeSocket.instances.length, 2);
  FakeSocket.last().accept();
  assert.deepEqual(FakeSocket.last().sent, ['{"action":"sendmessage","data":"while away"}']);
  assert.equal(c.state, 'open');
});

test('a 1000 from the server (the @connections DELETE) ends the client; close() ends it too', async () => {
  const first = start();
  await settle();
  FakeSocket.last().accept();
  FakeSocket.last().serverClose(1000);
  assert.equal(first.c.state, 'closed');
  await first.clock.advance(60_000);
  assert.equal(FakeSocket.instances.length, 1);
  assert.throws(() => first.c.send('x'), (error) => error.code === 'closed');

  FakeSocket.reset();
  const second = start();
  await settle();
  FakeSocket.last().accept();
  second.c.close();
  assert.equal(second.c.state, 'closed');
  await second.clock.advance(60_000);
  assert.equal(FakeSocket.instances.length, 1);
});

test('handshakes that never open back off exponentially, capped, then the client gives up', async () => {
  const { c, clock, states } = start({ random: () => 0.999999, maxAttempts: 6, baseMs: 100, capMs: 1_000 });
  await settle();
  const delays = [];
  for (let attempt = 1; attempt < 6; attempt += 1) {
    FakeSocket.last().refuse();
    delays.push(states.at(-1)[1].delayMs);
    await clock.advance(states.at(-1)[1].delayMs);
  }
  assert.deepEqual(delays, [199, 399, 799, 999, 999]);
  FakeSocket.last().refuse();
  assert.equal(c.state, 'closed');
  assert.match(states.at(-1)[1].reason, /gave up after 6 attempts/);
  assert.equal(FakeSocket.instances.length, 6);
});

test('a connection that drops right after opening does not reset the backoff (no storm)', async () => {
  const { clock, states } = start({ random: () => 0.999999, baseMs: 100, capMs: 100_000 });
  await settle();
  const delays = [];
  for (let i = 0; i < 4; i += 1) {
    FakeSocket.last().accept();
    FakeSocket.last().serverClose(1006);
    delays.push(states.at(-1)[1].delayMs);
    await clock.advance(states.at(-1)[1].delayMs);
  }
  assert.deepEqual(delays, [99, 199, 399, 799]);
});

test('keepalive: a ping goes out after keepaliveMs without a send, and each send resets the timer', async () => {
  const { c, clock } = start({ keepaliveMs: 1_000 });
  await settle();
  const socket = FakeSocket.last();
  socket.accept();
  await clock.advance(900);
  c.send('x');
  await clock.advance(900);
  assert.deepEqual(socket.sent, ['{"action":"sendmessage","data":"x"}']);
  await clock.advance(100);
  assert.deepEqual(socket.sent.at(-1), '{"action":"ping"}');
  await clock.advance(1_000);
  assert.equal(socket.sent.filter((s) => s === '{"action":"ping"}').length, 2);
});

test('a message delivered twice reaches the app once; the window of remembered ids is bounded', async () => {
  const { clock, messages } = start({ dedupeWindow: 2 });
  await settle();
  const socket = FakeSocket.last();
  socket.accept();
  const frame = (id) => JSON.stringify({ type: 'message', id, from: 'c1', data: id, sentAt: 't' });
  socket.deliver(frame('m1'));
  socket.deliver(frame('m1'));
  socket.deliver(frame('m2'));
  socket.deliver(frame('m3'));
  // m1 has left the window of two: a third copy is delivered again.
  socket.deliver(frame('m1'));
  assert.deepEqual(messages.map((m) => m.id), ['m1', 'm2', 'm3', 'm1']);
  await clock.advance(1);
});

test('the de-duplication holds across a reconnect (a retried post may arrive on the new connection)', async () => {
  const { clock, messages } = start();
  await settle();
  FakeSocket.last().accept();
  const frame = JSON.stringify({ type: 'message', id: 'same', from: 'c1', data: 1, sentAt: 't' });
  FakeSocket.last().deliver(frame);
  FakeSocket.last().serverClose(1001);
  await clock.advance(DEFAULTS.baseMs);
  FakeSocket.last().accept();
  FakeSocket.last().deliver(frame);
  assert.equal(messages.length, 1);
});

test('the token goes in the query string under tokenParameter, asked for again before each attempt', async () => {
  let issued = 0;
  const { clock } = start({ token: async () => `t${++issued}`, tokenParameter: 'auth' });
  await settle();
  assert.equal(FakeSocket.last().url, `${URL_}?auth=t1`);
  FakeSocket.last().refuse();
  await clock.advance(DEFAULTS.baseMs * 2);
  assert.equal(FakeSocket.last().url, `${URL_}?auth=t2`);
  assert.equal(withToken('ws://h/?a=1', 'x y', 'token'), 'ws://h/?a=1&token=x+y');
  assert.equal(withToken('ws://h/', undefined, 'token'), 'ws://h/');
});

test('backoff spreads 1,000 clients dropped together under 500 new connections per second', async () => {
  const random = seeded(26);
  const clock = new FakeClock();
  const clients = [];
  for (let i = 0; i < 1_000; i += 1) {
    clients.push(connect(URL_, { WebSocket: FakeSocket, clock, random }));
  }
  await settle();
  for (const socket of FakeSocket.instances) socket.accept();
  await clock.advance(DEFAULTS.stableMs);
  const before = FakeSocket.instances.length;
  const drop = clock.now();
  for (const socket of FakeSocket.instances.slice()) socket.serverClose(1001);
  const opens = [];
  for (let ms = 0; ms < 10_000; ms += 100) {
    await clock.advance(100);
    while (before + opens.length < FakeSocket.instances.length) opens.push(clock.now() - drop);
  }
  assert.equal(opens.length, 1_000, 'every client reconnected');
  let worst = 0;
  for (const start of opens) {
    const inWindow = opens.filter((t) => t >= start && t < start + 1_000).length;
    worst = Math.max(worst, inWindow);
  }
  assert.ok(worst <= 500, `${worst} attempts in the busiest second`);
  assert.ok(Math.max(...opens) <= DEFAULTS.baseMs, 'all within the first ceiling');
  for (const c of clients) c.close();
});

test('close codes: only 1000 ends the client', () => {
  for (const code of [1001, 1006, 1008, 1009, 1011, 1012, 4000]) assert.equal(closeAdvice(code).reconnect, true, String(code));
  assert.equal(closeAdvice(1000).reconnect, false);
});

test('backoffDelay is full jitter under min(cap, base * 2^n)', () => {
  const limits = { baseMs: 100, capMs: 1_000 };
  assert.equal(backoffDelay(0, limits, () => 0), 0);
  assert.equal(backoffDelay(3, limits, () => 0.5), 400);
  assert.equal(backoffDelay(60, limits, () => 0.5), 500);
  const ids = new RecentIds(1);
  assert.equal(ids.seen('a'), false);
  assert.equal(ids.seen('a'), true);
});

test('no WebSocket and no option: a clear error, not a TypeError later', () => {
  const saved = globalThis.WebSocket;
  globalThis.WebSocket = undefined;
  try {
    assert.throws(() => connect(URL_), (error) => error.code === 'no_websocket' && /experimental-websocket/.test(error.message));
  } finally {
    globalThis.WebSocket = saved;
  }
});

test('the .d.ts names every export of index.js', () => {
  const types = readFileSync(new URL('../src/index.d.ts', import.meta.url), 'utf8');
  for (const name of Object.keys(client)) {
    assert.match(types, new RegExp(`export (const|function|class) ${name}\\b`), name);
  }
});

test('a send while the socket is closing is queued for the next connection, not handed to a closing socket', async () => {
  const { c, clock } = start();
  await settle();
  const socket = FakeSocket.last();
  socket.accept();
  // The server has begun the close; the close event has not arrived yet.
  socket.readyState = 2;
  assert.equal(c.send('late'), 'queued');
  socket.serverClose(1001);
  await clock.advance(DEFAULTS.baseMs);
  FakeSocket.last().accept();
  assert.deepEqual(FakeSocket.last().sent, ['{"action":"sendmessage","data":"late"}']);
  assert.deepEqual(socket.sent, []);
});

test("a handshake that fails with only an 'error' event (Node 20) or hangs is retried, then given up", async () => {
  const { c, clock, states } = start({ maxAttempts: 3, connectTimeoutMs: 1_000, baseMs: 10 });
  await settle();
  FakeSocket.last().errorOnly();
  assert.equal(states.at(-1)[0], 'reconnecting');
  // random() = 0.5 of min(cap, 10 * 2^1): the second attempt starts at 10 ms.
  await clock.advance(10);
  assert.equal(FakeSocket.instances.length, 2);
  // The second handshake hangs: abandoned at connectTimeoutMs.
  await clock.advance(999);
  assert.equal(c.state, 'connecting');
  await clock.advance(1);
  assert.match(states.at(-1)[1].reason, /did not complete within 1000 ms/);
  await clock.advance(40);
  FakeSocket.last().errorOnly();
  assert.equal(c.state, 'closed');
  assert.match(states.at(-1)[1].reason, /gave up after 3 attempts/);
  // A late open of an abandoned socket changes nothing.
  FakeSocket.instances[1].accept();
  assert.equal(c.state, 'closed');
});
