// The live view: what the local stack did, from its event stream
// (GET /events: a `snapshot` event, then a `stack` event per thing that
// happened). The counting follows devstack's Snapshot::apply, so the page
// shows what GET /snapshot says.

const RECENT_EVENTS = 50;
/** Open connections listed at most: the rest are counted, not rendered. */
export const SHOWN_CONNECTIONS = 100;

/**
 * The lines of the open-connections list: the newest `limit` connections,
 * plus one line counting the others, so a stack with 10,000 connections
 * renders 101 items on each event, not 10,000.
 */
export function connectionLines(connections, limit = SHOWN_CONNECTIONS) {
  const all = [...connections.values()];
  const shown = all.slice(Math.max(0, all.length - limit)).reverse();
  const lines = shown.map((c) => `${c.connectionId} from ${c.sourceIp} since ${c.openedAt.slice(11, 19)}`);
  if (all.length > shown.length) lines.push(`… and ${all.length - shown.length} more (oldest not shown)`);
  return lines;
}

/** A fresh state from a snapshot document. */
function fromSnapshot(snapshot) {
  return {
    seq: snapshot.seq,
    connections: new Map(snapshot.connections.map((c) => [c.connectionId, c])),
    invocations: snapshot.invocations,
    byRoute: new Map(Object.entries(snapshot.invocationsByRoute)),
    wafBlocks: snapshot.wafBlocks,
    throttled: snapshot.throttled,
    handshakesRefused: snapshot.handshakesRefused,
    processes: new Set(snapshot.processes),
    coldStarts: snapshot.coldStarts,
    recent: [...snapshot.recent],
  };
}

/** Counts one event in, as Snapshot::apply does. */
function apply(state, event) {
  state.seq = event.seq;
  switch (event.type) {
    case 'connectionOpened':
      state.connections.set(event.connectionId, { connectionId: event.connectionId, sourceIp: event.sourceIp, openedAt: event.at });
      break;
    case 'connectionClosed':
      state.connections.delete(event.connectionId);
      break;
    case 'handshakeRefused':
      state.handshakesRefused += 1;
      break;
    case 'invocation': {
      state.invocations += 1;
      const route = state.byRoute.get(event.route) ?? { count: 0, ok: 0, failed: 0, totalLatencyMs: 0, lastLatencyMs: 0 };
      route.count += 1;
      if (event.outcome === 'ok') route.ok += 1; else route.failed += 1;
      route.totalLatencyMs += event.latencyMs;
      route.lastLatencyMs = event.latencyMs;
      state.byRoute.set(event.route, route);
      break;
    }
    case 'wafBlocked':
      state.wafBlocks += 1;
      break;
    case 'throttled':
      state.throttled += 1;
      break;
    case 'processStarted':
      state.coldStarts += 1;
      state.processes.add(event.pid);
      break;
    case 'processExited':
      state.processes.delete(event.pid);
      break;
    default:
      break;
  }
  state.recent.push(event);
  if (state.recent.length > RECENT_EVENTS) state.recent.shift();
}

/** One line for an event in the recent list. */
export function describeEvent(event) {
  switch (event.type) {
    case 'connectionOpened':
      return `connection opened ${event.connectionId} from ${event.sourceIp}`;
    case 'connectionClosed':
      return `connection closed ${event.connectionId}: ${event.statusCode}${event.reason ? ` ${event.reason}` : ''} after ${formatDuration(event.durationMs)}`;
    case 'handshakeRefused':
      return `handshake refused ${event.status} from ${event.sourceIp}: ${event.reason}`;
    case 'invocation':
      return `invoked ${event.route} → ${event.outcome} in ${event.latencyMs} ms (${event.connectionId})`;
    case 'wafBlocked':
      return `WAF rule ${event.rule} blocked ${event.clientIp} (403)`;
    case 'throttled':
      return `throttled ${event.route} from ${event.connectionId} (Too Many Requests)`;
    case 'processStarted':
      return `function process ${event.pid} started (cold start, init ${event.initMs} ms)`;
    case 'processExited':
      return `function process ${event.pid} ended: ${event.reason}`;
    default:
      return `${event.type}`;
  }
}

function formatDuration(ms) {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** Whether an outcome is a failure, for highlighting. */
function failed(event) {
  return (event.type === 'invocation' && event.outcome !== 'ok')
    || event.type === 'wafBlocked' || event.type === 'throttled' || event.type === 'handshakeRefused'
    || (event.type === 'processExited' && event.reason !== 'stopped');
}

export class LiveView {
  /** @param {HTMLElement} root the live view's section */
  constructor(root) {
    this.root = root;
    this.el = (id) => root.querySelector(`#${id}`);
    this.state = null;
    this.source = null;
    this.local = true;
  }

  /** Follows the stack's event stream (the browser reconnects by itself). */
  start() {
    this.source = new EventSource('events');
    this.source.addEventListener('snapshot', (message) => {
      this.state = fromSnapshot(JSON.parse(message.data));
      this.setStream('live');
      this.render();
    });
    this.source.addEventListener('stack', (message) => {
      const event = JSON.parse(message.data);
      if (!this.state || event.seq <= this.state.seq) return;
      apply(this.state, event);
      this.render();
    });
    this.source.addEventListener('error', () => {
      this.setStream(this.source.readyState === EventSource.CLOSED ? 'stopped' : 'reconnecting');
    });
  }

  setStream(status) {
    this.root.dataset.stream = status;
    this.el('live-stream').textContent = {
      live: 'live',
      reconnecting: 'stack unreachable, retrying…',
      stopped: 'stream stopped',
    }[status];
  }

  /**
   * Whether the page's URL is this local stack. When it is not, the view says
   * it shows the local stack only: a deployed stack's insides are in AWS.
   */
  setTarget(url, local) {
    this.local = local;
    this.root.dataset.scope = local ? 'local' : 'remote';
    const notice = this.el('live-scope');
    notice.hidden = local;
    notice.textContent = local ? '' : `Local only: ${url} is not this machine's stack, so what it does inside (connections, invocations, WAF blocks, throttling) is in AWS — CloudWatch and the WAF's logs. The counts below are the local stack's.`;
  }

  render() {
    const s = this.state;
    if (!s) return;
    this.el('count-connections').textContent = s.connections.size;
    this.el('count-invocations').textContent = s.invocations;
    this.el('count-waf').textContent = s.wafBlocks;
    this.el('count-throttled').textContent = s.throttled;
    this.el('count-refused').textContent = s.handshakesRefused;
    const coldStarts = document.createElement('small');
    coldStarts.textContent = ` · ${s.coldStarts} cold start${s.coldStarts === 1 ? '' : 's'}`;
    this.el('count-processes').replaceChildren(String(s.processes.size), coldStarts);

    const rows = [...s.byRoute.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([route, c]) => {
      const row = document.createElement('tr');
      row.dataset.route = route;
      const mean = c.count ? Math.round(c.totalLatencyMs / c.count) : 0;
      for (const [value, cls] of [[route, 'route'], [c.count, 'count'], [c.ok, 'ok'], [c.failed, c.failed ? 'failed bad' : 'failed'], [c.lastLatencyMs, 'last'], [mean, 'mean']]) {
        const cell = document.createElement(cls === 'route' ? 'th' : 'td');
        if (cls === 'route') cell.scope = 'row';
        cell.className = cls;
        cell.textContent = value;
        row.append(cell);
      }
      return row;
    });
    this.el('routes-body').replaceChildren(...rows);
    this.el('routes-empty').hidden = rows.length > 0;

    const connections = connectionLines(s.connections).map((line) => {
      const item = document.createElement('li');
      item.textContent = line;
      return item;
    });
    this.el('connections').replaceChildren(...connections);

    const events = s.recent.slice().reverse().map((event) => {
      const item = document.createElement('li');
      item.dataset.type = event.type;
      if (failed(event)) item.classList.add('bad');
      const time = document.createElement('time');
      time.dateTime = event.at;
      time.textContent = event.at.slice(11, 23);
      item.append(time, ` ${describeEvent(event)}`);
      return item;
    });
    this.el('events').replaceChildren(...events);
  }
}
