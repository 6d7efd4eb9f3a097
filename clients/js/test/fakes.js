// Test doubles for the client's unit tests: a WebSocket whose server side the
// test plays, a clock the test advances, and a seeded random source.

export class FakeSocket extends EventTarget {
  static instances = [];

  constructor(url) {
    super();
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.instances.push(this);
  }

  send(text) {
    if (this.readyState !== 1) throw new Error(`send on a socket in state ${this.readyState}`);
    this.sent.push(text);
  }

  close(code = 1000, reason = '') {
    this.serverClose(code, reason);
  }

  // What the test does as the server.
  accept() {
    this.readyState = 1;
    this.dispatchEvent(new Event('open'));
  }

  deliver(text) {
    const event = new Event('message');
    event.data = text;
    this.dispatchEvent(event);
  }

  serverClose(code, reason = '') {
    if (this.readyState === 3) return;
    this.readyState = 3;
    const event = new Event('close');
    event.code = code;
    event.reason = reason;
    this.dispatchEvent(event);
  }

  refuse() {
    this.serverClose(1006);
  }

  /** A refused handshake as Node 20's WebSocket reports it: 'error', no 'close'. */
  errorOnly() {
    this.dispatchEvent(new Event('error'));
  }

  static reset() {
    FakeSocket.instances = [];
  }

  static last() {
    return FakeSocket.instances[FakeSocket.instances.length - 1];
  }
}

/** Timers that run only when the test advances time. */
export class FakeClock {
  constructor() {
    this.time = 0;
    this.timers = new Map();
    this.next = 1;
  }

  now() {
    return this.time;
  }

  setTimeout(f, ms) {
    const id = this.next++;
    this.timers.set(id, { at: this.time + ms, f });
    return id;
  }

  clearTimeout(id) {
    this.timers.delete(id);
  }

  /** Runs every timer due within `ms`, in time order, letting promises settle between. */
  async advance(ms) {
    const end = this.time + ms;
    for (;;) {
      let due = null;
      for (const [id, timer] of this.timers) {
        if (timer.at <= end && (due === null || timer.at < due[1].at)) due = [id, timer];
      }
      if (due === null) break;
      this.timers.delete(due[0]);
      this.time = due[1].at;
      due[1].f();
      await settle();
    }
    this.time = end;
    await settle();
  }
}

/** Lets the client's pending promises (the token, the open) run. */
export async function settle() {
  for (let i = 0; i < 5; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

/** A seeded random source (mulberry32): the same figures on every run. */
export function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
