// A client of the WebSocket API that survives what API Gateway and networks do
// to connections: reconnect with capped, fully jittered exponential backoff
// (and a give-up policy), a keepalive ping inside the 10-minute idle limit, a
// bounded queue for what is sent while reconnecting (flushed in order), and
// `message` frames de-duplicated by id. No dependencies: browsers and Node >= 20
// (Node 20 needs `--experimental-websocket` for its global WebSocket, or pass
// `options.WebSocket`).

/** Defaults, each overridable in `connect`'s options. */
export const DEFAULTS = Object.freeze({
  // API Gateway closes a connection after 10 minutes without traffic: ping at
  // half that, so one lost ping still leaves a margin.
  keepaliveMs: 5 * 60 * 1000,
  // Backoff: attempt n waits random() * min(capMs, baseMs * 2^n) (full jitter).
  // 3 s for the first: 1,000 clients dropped together come back at about
  // 333/s, under the account's 500 new connections per second.
  baseMs: 3_000,
  capMs: 30_000,
  // Give up after this many attempts in a row that never opened (null: never).
  maxAttempts: 12,
  // A connection that stayed open this long resets the backoff; a stack that
  // accepts and drops at once is retried with growing waits, not in a storm.
  stableMs: 5_000,
  // A handshake not open within this is abandoned and counted as a failure.
  connectTimeoutMs: 10_000,
  queueLimit: 100,
  dedupeWindow: 1_000,
  tokenParameter: 'token',
});

/** The client's states, in the order a life goes through them. */
export const STATES = Object.freeze(['connecting', 'open', 'reconnecting', 'closed']);

/** An error the client throws: `code` is 'queue_full', 'closed' or 'no_websocket'. */
export class ClientError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'ClientError';
    this.code = code;
  }
}

/** What a close code means to a client: whether it reconnects, and why. */
export function closeAdvice(code) {
  switch (code) {
    case 1000:
      return { reconnect: false, why: 'closed on purpose (the app or the @connections DELETE API)' };
    case 1001:
      return { reconnect: true, why: 'going away: the 10-minute idle limit, the 2-hour maximum life, or a restart' };
    case 1008:
      return { reconnect: true, why: 'policy: the server closed a connection that did not read' };
    case 1009:
      return { reconnect: true, why: 'message too big: a frame over 32 KB or a message over 128 KB was refused' };
    case 1011:
      return { reconnect: true, why: 'internal error on the server' };
    default:
      return { reconnect: true, why: 'closed abnormally: the network, the edge or a refused handshake' };
  }
}

/** Remembers the last `size` ids; `seen(id)` is true for an id already seen. */
export class RecentIds {
  constructor(size) {
    this.size = Math.max(1, size);
    this.ids = new Set();
  }

  seen(id) {
    if (this.ids.has(id)) return true;
    this.ids.add(id);
    // A Set iterates in insertion order: the first is the oldest.
    if (this.ids.size > this.size) this.ids.delete(this.ids.values().next().value);
    return false;
  }
}

/** The wait before reconnect attempt `attempt` (0-based): full jitter, capped. */
export function backoffDelay(attempt, { baseMs, capMs }, random = Math.random) {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** Adds the sign-in token to the URL's query string under `parameter`. */
export function withToken(url, token, parameter) {
  if (token === undefined || token === null || token === '') return url;
  const parsed = new URL(url);
  parsed.searchParams.set(parameter, token);
  return parsed.toString();
}

/**
 * Opens a connection that keeps itself open. Options (all optional but the URL):
 * token (string or function returning one, called before each attempt),
 * onMessage(frame) for each new `message` frame, onFrame(frame) for every frame
 * of the function (message, sent, pong, error), onState(state, detail),
 * plus DEFAULTS' keys, WebSocket (a constructor), random and clock
 * ({setTimeout, clearTimeout, now}) for tests.
 */
export function connect(url, options = {}) {
  return new Client(url, options);
}

class Client {
  constructor(url, options) {
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    const WebSocketClass = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WebSocketClass !== 'function') {
      throw new ClientError('no_websocket', 'no WebSocket here: Node 20 needs --experimental-websocket, or pass options.WebSocket');
    }
    this.WebSocket = WebSocketClass;
    this.clock = options.clock ?? { setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (t) => clearTimeout(t), now: () => Date.now() };
    this.random = options.random ?? Math.random;
    this.queue = [];
    this.recent = new RecentIds(this.options.dedupeWindow);
    this.failures = 0;
    this.attempts = 0;
    this.state = null;
    this.socket = null;
    this.timer = null;
    this.keepalive = null;
    this.openedAt = null;
    this.open();
  }

  /** Sends `data` as a `sendmessage`: 'sent' at once, or 'queued' until the connection is open. */
  send(data) {
    return this.sendFrame({ action: 'sendmessage', data });
  }

  /** Sends a `ping` (the function answers `pong`). */
  ping() {
    return this.sendFrame({ action: 'ping' });
  }

  /** Sends any client frame ({action, data?}). */
  sendFrame(frame) {
    if (this.state === 'closed') throw new ClientError('closed', 'the client is closed; connect again');
    const text = JSON.stringify(frame);
    // A socket that has begun closing discards what it is given without an
    // error: only a socket still OPEN (1) takes a frame; otherwise it is queued.
    if (this.state === 'open' && this.socket && this.socket.readyState === 1) {
      this.socket.send(text);
      this.armKeepalive();
      return 'sent';
    }
    if (this.queue.length >= this.options.queueLimit) {
      throw new ClientError('queue_full', `the send queue holds ${this.options.queueLimit} frames while reconnecting; this one was not queued`);
    }
    this.queue.push(text);
    return 'queued';
  }

  /** Closes for good (1000); queued frames are dropped and counted in the 'closed' detail. */
  close() {
    if (this.state === 'closed') return;
    const socket = this.socket;
    this.finish({ reason: 'closed by the app', dropped: this.queue.length });
    if (socket && socket.readyState <= 1) socket.close(1000, 'closed by the client');
  }

  async open() {
    this.attempts += 1;
    this.setState('connecting', { attempt: this.attempts });
    let token;
    try {
      token = typeof this.options.token === 'function' ? await this.options.token() : this.options.token;
    } catch (error) {
      this.failed({ code: null, reason: `the token could not be had: ${error.message}` });
      return;
    }
    if (this.state === 'closed') return;
    let socket;
    try {
      socket = new this.WebSocket(withToken(this.url, token, this.options.tokenParameter));
    } catch (error) {
      this.finish({ reason: `the URL cannot be opened: ${error.message}`, dropped: this.queue.length });
      return;
    }
    this.socket = socket;
    let opened = false;
    // A handshake that fails without a close event (Node 20's WebSocket sends
    // only 'error' for a refused one) or that hangs is abandoned here.
    const abandon = (reason) => {
      if (this.socket !== socket || opened) return;
      this.socket = null;
      this.clock.clearTimeout(this.timer);
      try {
        socket.close();
      } catch {
        // Closing a socket that never opened may throw; it is dropped either way.
      }
      this.failed({ code: 1006, reason, opened: false });
    };
    this.timer = this.clock.setTimeout(() => abandon(`the handshake did not complete within ${this.options.connectTimeoutMs} ms`), this.options.connectTimeoutMs);
    socket.addEventListener('error', () => abandon('the handshake failed (refused, or the network)'));
    socket.addEventListener('open', () => {
      if (this.socket !== socket) return;
      opened = true;
      this.clock.clearTimeout(this.timer);
      this.openedAt = this.clock.now();
      this.setState('open', { attempt: this.attempts });
      while (this.queue.length > 0 && this.socket === socket) socket.send(this.queue.shift());
      this.armKeepalive();
    });
    socket.addEventListener('message', (event) => {
      if (this.socket === socket) this.received(event.data);
    });
    socket.addEventListener('close', (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.clock.clearTimeout(this.keepalive);
      this.clock.clearTimeout(this.timer);
      const detail = { code: event.code, reason: event.reason, opened };
      if (opened && this.clock.now() - this.openedAt >= this.options.stableMs) this.failures = 0;
      if (!opened) {
        this.failed(detail);
        return;
      }
      const advice = closeAdvice(event.code);
      if (!advice.reconnect) {
        this.finish({ ...detail, reason: advice.why, dropped: this.queue.length });
        return;
      }
      this.retry({ ...detail, why: advice.why });
    });
  }

  received(text) {
    if (typeof text !== 'string') return;
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (frame === null || typeof frame !== 'object') return;
    if (frame.type === 'message') {
      if (typeof frame.id === 'string' && this.recent.seen(frame.id)) return;
      this.options.onMessage?.(frame);
    }
    this.options.onFrame?.(frame);
  }

  failed(detail) {
    this.failures += 1;
    const limit = this.options.maxAttempts;
    if (limit !== null && this.failures >= limit) {
      this.finish({ ...detail, reason: `gave up after ${this.failures} attempts that did not open`, dropped: this.queue.length });
      return;
    }
    this.retry(detail);
  }

  retry(detail) {
    const delayMs = backoffDelay(this.failures, this.options, this.random);
    // An open that follows a drop counts as a failure until it proves stable.
    this.failures += detail.opened ? 1 : 0;
    this.setState('reconnecting', { ...detail, delayMs });
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      if (this.state !== 'closed') this.open();
    }, delayMs);
  }

  armKeepalive() {
    this.clock.clearTimeout(this.keepalive);
    this.keepalive = this.clock.setTimeout(() => {
      if (this.state === 'open' && this.socket?.readyState === 1) this.ping();
    }, this.options.keepaliveMs);
  }

  finish(detail) {
    this.clock.clearTimeout(this.timer);
    this.clock.clearTimeout(this.keepalive);
    this.socket = null;
    this.queue = [];
    this.setState('closed', detail);
  }

  setState(state, detail) {
    this.state = state;
    this.options.onState?.(state, detail);
  }
}
