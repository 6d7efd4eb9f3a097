// The console page: wires the client (connection.js), the frame log and the
// live view (live.js) to the DOM. The connection stays raw on purpose (the
// page sends malformed and oversized frames and shows every close); the
// client library (client.js, clients/js) puts the token in the URL and says
// what an app built on it would do after each close.

import { closeAdvice, withToken } from './client.js';
import { Connection } from './connection.js';
import { formatBytes, sendMessageFrame } from './frames.js';
import { LiveView } from './live.js';

const $ = (id) => document.getElementById(id);
const SHOWN_CHARS = 400;
const LOG_LIMIT = 500;

let stack = null;
const live = new LiveView($('live'));

/** Whether `url` points at this local stack (its edge or its API layer). */
function isLocal(url) {
  if (!stack) return false;
  let target;
  try {
    target = new URL(url);
  } catch {
    return false;
  }
  const host = target.hostname;
  const loopback = host === 'localhost' || host === '[::1]' || /^127\./.test(host);
  return loopback && [stack.edge, stack.api].some((endpoint) => new URL(endpoint).port === target.port);
}

function clock(date = new Date()) {
  return date.toISOString().slice(11, 23);
}

function shorten(text) {
  if (text.length <= SHOWN_CHARS) return text;
  return `${text.slice(0, SHOWN_CHARS)}… (${formatBytes(new Blob([text]).size)} in all)`;
}

function span(className, text) {
  const element = document.createElement('span');
  element.className = className;
  element.textContent = text;
  return element;
}

/** Adds one line to the frame log: direction, kind, and what it says. */
function log(direction, kind, parts) {
  const item = document.createElement('li');
  item.className = `frame ${direction}`;
  item.dataset.kind = kind;
  const time = document.createElement('time');
  time.textContent = clock();
  const arrow = span('dir', { in: '←', out: '→', info: '•' }[direction]);
  arrow.title = { in: 'received', out: 'sent', info: 'connection' }[direction];
  item.append(time, arrow, span(`kind kind-${kind}`, kind), ...parts);
  const list = $('log');
  list.prepend(item);
  while (list.children.length > LOG_LIMIT) list.lastElementChild.remove();
}

function logIncoming(text, frame) {
  switch (frame.kind) {
    case 'message':
      log('in', 'message', [
        span('from', frame.userId === undefined ? `from ${frame.from}` : `from ${frame.userId} (${frame.from})`),
        span('muted', ` at ${frame.sentAt.slice(11, 23)}: `),
        span('data', shorten(JSON.stringify(frame.data))),
      ]);
      break;
    case 'sent':
      log('in', 'sent', [span('', `reached ${frame.recipients} other connection${frame.recipients === 1 ? '' : 's'}`)]);
      break;
    case 'pong':
      log('in', 'pong', frame.roundTripMs === undefined ? [] : [span('rtt', `round trip ${frame.roundTripMs.toFixed(1)} ms`)]);
      break;
    case 'error':
      log('in', 'error', [span('code', frame.code), span('message', ` ${frame.message}`)]);
      break;
    case 'gateway':
      log('in', 'gateway', [
        span('code', frame.message), span('message', ` — API Gateway: ${frame.meaning}`),
        span('muted', ` (request ${frame.requestId})`),
      ]);
      break;
    default:
      log('in', 'text', [span('data', shorten(text))]);
  }
}

function logOutgoing(text) {
  let action = null;
  try {
    action = JSON.parse(text)?.action;
  } catch {
    // Sent as typed; the server will say what is wrong with it.
  }
  const size = new Blob([text]).size;
  log('out', typeof action === 'string' ? action : 'raw', [
    span('data', shorten(text)), ...(size > 1024 ? [span('muted', ` (${formatBytes(size)})`)] : []),
  ]);
}

function setControls(state) {
  const open = state === 'open';
  $('send').disabled = !open;
  $('send-raw').disabled = !open;
  $('ping').disabled = !open;
  $('disconnect').disabled = !(open || state === 'connecting');
  $('connect').disabled = state === 'connecting';
}

/** `url` with its sign-in token hidden, for the page. */
function shown(url) {
  try {
    const target = new URL(url);
    const name = stack?.signIn?.tokenParameter ?? 'token';
    if (target.searchParams.has(name)) target.searchParams.set(name, '…');
    return target.href;
  } catch {
    return url;
  }
}

function showState(state, detail) {
  if (detail?.url) detail = { ...detail, url: shown(detail.url) };
  const line = $('state');
  line.dataset.state = state;
  delete line.dataset.code;
  setControls(state);
  if (state === 'connecting') {
    line.textContent = `Connecting to ${detail.url}…`;
  } else if (state === 'open') {
    line.textContent = `Connected to ${detail.url}`;
    log('info', 'open', [span('', `connected to ${detail.url}`)]);
  } else if (state === 'closing') {
    line.textContent = 'Closing…';
  } else if (state === 'closed') {
    const code = detail.code ?? '';
    line.dataset.code = String(code);
    const reason = detail.reason ? ` “${detail.reason}”` : '';
    const advice = code === '' ? null : closeAdvice(code);
    const library = advice
      ? span('advice', ` An app on clients/js ${advice.reconnect ? 'reconnects by itself' : 'stays closed'}.`)
      : span('advice', '');
    line.replaceChildren(
      span('', detail.duringConnect ? 'Could not connect: ' : 'Closed: '),
      span('code', `${code}`), span('', `${reason} — ${detail.meaning}`), library,
    );
    log('info', 'close', [span('code', `${code}`), span('message', `${reason} ${detail.meaning}`)]);
  }
}

const connection = new Connection({
  state: showState,
  frame: (direction, text, frame) => (direction === 'in' ? logIncoming(text, frame) : logOutgoing(text)),
});

function updateTarget() {
  const url = $('url').value.trim();
  live.setTarget(url, isLocal(url));
}

/** `url` with the sign-in token in its query string: the pasted token, or
 * one the console mints for the user name through the local issuer; `url`
 * itself when neither is given. */
async function signedIn(url) {
  const pasted = $('token').value.trim();
  const user = $('user').value.trim();
  let token = pasted;
  if (!token && user) {
    if (!(stack?.signIn?.mints && isLocal(url))) {
      throw new Error('a user name signs in to this local stack only (its local issuer); paste a token for a deployment');
    }
    const response = await fetch('token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ sub: user }),
    });
    if (!response.ok) throw new Error(`POST /token answered ${response.status}: ${await response.text()}`);
    token = (await response.json()).token;
  }
  return withToken(url, token, stack?.signIn?.tokenParameter ?? 'token');
}

$('connect-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  updateTarget();
  const url = $('url').value.trim();
  try {
    connection.connect(await signedIn(url));
  } catch (error) {
    showState('closed', { code: null, reason: error.message, meaning: 'Not signed in.', duringConnect: true });
  }
});
$('url').addEventListener('input', updateTarget);
$('disconnect').addEventListener('click', () => connection.disconnect());
$('send-form').addEventListener('submit', (event) => {
  event.preventDefault();
  connection.send(sendMessageFrame($('message').value));
});
$('send-raw').addEventListener('click', () => connection.send($('message').value));
$('ping').addEventListener('click', () => connection.ping());
$('clear-log').addEventListener('click', () => $('log').replaceChildren());
$('message').addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    $('send-form').requestSubmit();
  }
});

async function init() {
  live.start();
  const requested = new URLSearchParams(location.search).get('url');
  try {
    const response = await fetch('snapshot');
    if (!response.ok) throw new Error(`GET /snapshot answered ${response.status}`);
    stack = (await response.json()).stack;
    $('stack-name').textContent = `stack ${stack.stack} of ${stack.project} (region ${stack.region}) · edge ${stack.edge}`;
    const choices = [[stack.edge, 'the edge (CloudFront + WAF)'], [stack.api, 'the API directly (refused: a browser cannot send x-api-key)']];
    $('url-choices').replaceChildren(...choices.map(([value, label]) => Object.assign(document.createElement('option'), { value, label })));
  } catch (error) {
    $('stack-name').textContent = `cannot reach the local stack: ${error.message}`;
  }
  $('url').value = requested ?? stack?.edge ?? '';
  if (stack?.signIn?.mints) $('user').placeholder = 'a user name, e.g. alice (required: sign-in is on)';
  updateTarget();
  document.body.dataset.ready = 'true';
}

init();
