// The console's frame descriptions (devstack/console/frames.js), without a
// browser: run by tests/browser.rs with node's test runner.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeFrame } from '../../devstack/console/frames.js';

test('a message frame is described with its data', () => {
  const frame = describeFrame('{"type":"message","id":"a","from":"b","data":{"x":1},"sentAt":"2026-01-01T00:00:00.000Z"}');
  assert.deepEqual(frame, { kind: 'message', from: 'b', sentAt: '2026-01-01T00:00:00.000Z', data: { x: 1 } });
});

test('a message frame with null data keeps it', () => {
  const frame = describeFrame('{"type":"message","from":"b","data":null,"sentAt":"t"}');
  assert.equal(frame.kind, 'message');
  assert.equal(frame.data, null);
});

test('a message frame without data is shown as text, not a message the page cannot render', () => {
  const text = '{"type":"message","from":"b","sentAt":"t"}';
  assert.deepEqual(describeFrame(text), { kind: 'text', text });
});

test('the live view lists the newest connections and counts the rest', async () => {
  const { connectionLines, SHOWN_CONNECTIONS } = await import('../../devstack/console/live.js');
  const connections = new Map();
  for (let n = 0; n < 10000; n += 1) {
    connections.set(`c${n}`, { connectionId: `c${n}`, sourceIp: '127.0.0.1', openedAt: '2026-01-01T00:00:00.000Z' });
  }
  const lines = connectionLines(connections);
  assert.equal(lines.length, SHOWN_CONNECTIONS + 1);
  assert.match(lines[0], /^c9999 from 127\.0\.0\.1/);
  assert.equal(lines.at(-1), `… and ${10000 - SHOWN_CONNECTIONS} more (oldest not shown)`);
  const few = new Map([...connections].slice(0, 3));
  assert.deepEqual(connectionLines(few).map((l) => l.split(' ')[0]), ['c2', 'c1', 'c0']);
});
