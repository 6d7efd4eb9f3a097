// One WebSocket connection to the API: its state, the frames in and out, and
// the round trip of each ping. Reports through the callbacks it is given.

import { PING_FRAME, closeMeaning, describeFrame } from './frames.js';

export class Connection {
  /**
   * @param {object} on  callbacks: state(state, detail), frame(direction, text, frame)
   *   state is one of 'connecting', 'open', 'closing', 'closed';
   *   for 'closed', detail is {code, reason, meaning, wasClean, duringConnect};
   *   frame is describeFrame's reading of an incoming frame (a pong also has
   *   roundTripMs), null for an outgoing one.
   */
  constructor(on) {
    this.on = on;
    this.socket = null;
    this.pings = [];
  }

  get isOpen() {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  connect(url) {
    this.disconnect();
    let socket;
    try {
      socket = new WebSocket(url);
    } catch (error) {
      // A malformed URL or a scheme other than ws:/wss: throws at once.
      this.on.state('closed', { code: null, reason: error.message, meaning: 'The URL cannot be opened as a WebSocket.', wasClean: false, duringConnect: true });
      return;
    }
    this.socket = socket;
    this.pings = [];
    let opened = false;
    this.on.state('connecting', { url });
    socket.addEventListener('open', () => {
      opened = true;
      this.on.state('open', { url });
    });
    socket.addEventListener('message', (event) => {
      if (typeof event.data !== 'string') {
        this.on.frame('in', '(a binary frame)', { kind: 'text', text: '(a binary frame)' });
        return;
      }
      const frame = describeFrame(event.data);
      // Pongs come back in the order the pings went out.
      if (frame.kind === 'pong' && this.pings.length > 0) {
        frame.roundTripMs = performance.now() - this.pings.shift();
      }
      this.on.frame('in', event.data, frame);
    });
    socket.addEventListener('close', (event) => {
      if (this.socket === socket) this.socket = null;
      this.on.state('closed', {
        code: event.code,
        reason: event.reason,
        meaning: closeMeaning(event.code),
        wasClean: event.wasClean,
        duringConnect: !opened,
      });
    });
  }

  disconnect() {
    if (this.socket && this.socket.readyState <= WebSocket.OPEN) {
      this.on.state('closing', {});
      this.socket.close(1000, 'closed from the console');
    }
  }

  send(text) {
    if (!this.isOpen) return false;
    this.socket.send(text);
    this.on.frame('out', text, null);
    return true;
  }

  ping() {
    if (!this.isOpen) return false;
    this.pings.push(performance.now());
    return this.send(PING_FRAME);
  }
}
