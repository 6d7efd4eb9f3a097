// What the frames of the WebSocket API mean: the close codes, and each frame
// a client receives (the function's frames and API Gateway's own). No DOM
// here: app.js renders what these functions return.

/** Close codes a client of this API meets, with what they mean here. */
const CLOSE_CODES = new Map([
  [1000, 'Normal closure: the connection was closed on purpose (by this page, or by the @connections DELETE API).'],
  [1001, 'Going away: 10 minutes without traffic (idle timeout), the 2-hour maximum connection life, or the stack shutting down.'],
  [1002, 'Protocol error: a frame broke the WebSocket protocol.'],
  [1003, 'Unsupported data.'],
  [1005, 'No status: the close frame carried no code.'],
  [1006, 'Closed abnormally, without a close frame. During connecting this means the handshake was refused: a direct connection to the API without x-api-key gets 403 (a browser cannot send that header; connect through the edge), and the WAF rate rule answers 403 too. Otherwise the network or the server dropped the connection.'],
  [1007, 'Invalid frame payload data (for example text that is not UTF-8).'],
  [1008, 'Policy violation.'],
  [1009, 'Message too big: API Gateway accepts frames up to 32 KB and messages up to 128 KB, and closes the connection for anything larger.'],
  [1011, 'Internal error: the server met a condition it could not handle.'],
  [1012, 'Service restart.'],
  [1013, 'Try again later.'],
  [1015, 'TLS handshake failed (wss:// certificate or protocol problem).'],
]);

/** What close code `code` means, in a sentence. */
export function closeMeaning(code) {
  const known = CLOSE_CODES.get(code);
  if (known) return known;
  if (code >= 4000 && code <= 4999) return 'Application-defined close code.';
  if (code >= 3000 && code <= 3999) return 'Close code registered for a library or framework.';
  return 'Unknown close code.';
}

/** API Gateway's own frames, which are not the function's. */
const GATEWAY_MESSAGES = new Map([
  ['Internal server error', 'the integration failed: the function crashed, timed out or returned an error'],
  ['Too Many Requests', 'stage throttling refused the message (the route\'s rate or burst limit)'],
  ['Forbidden', 'no route matched the message and there is no $default route'],
]);

/**
 * Classifies a text frame the server sent. Returns one of
 * {kind:'message', from, sentAt, data, userId?} · {kind:'sent', recipients} · {kind:'pong'}
 * · {kind:'error', code, message} · {kind:'gateway', message, meaning, connectionId, requestId}
 * · {kind:'text', text} (anything else).
 */
export function describeFrame(text) {
  let frame;
  try {
    frame = JSON.parse(text);
  } catch {
    return { kind: 'text', text };
  }
  if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) {
    return { kind: 'text', text };
  }
  switch (frame.type) {
    case 'message':
      // Without `data` it is not a frame of ours: shown as it came.
      if (!('data' in frame)) break;
      return {
        kind: 'message', from: String(frame.from), sentAt: String(frame.sentAt), data: frame.data,
        ...(typeof frame.userId === 'string' ? { userId: frame.userId } : {}),
      };
    case 'sent':
      return { kind: 'sent', recipients: Number(frame.recipients) };
    case 'pong':
      return { kind: 'pong' };
    case 'error':
      return { kind: 'error', code: String(frame.code), message: String(frame.message) };
    default:
      break;
  }
  if (typeof frame.message === 'string' && 'connectionId' in frame) {
    return {
      kind: 'gateway',
      message: frame.message,
      meaning: GATEWAY_MESSAGES.get(frame.message) ?? 'a frame API Gateway sends itself',
      connectionId: String(frame.connectionId),
      requestId: String(frame.requestId ?? ''),
    };
  }
  return { kind: 'text', text };
}

/**
 * The `sendmessage` frame for what the user typed: the text as JSON data when
 * it parses as JSON, else as a string.
 */
export function sendMessageFrame(typed) {
  let data;
  try {
    data = JSON.parse(typed);
  } catch {
    data = typed;
  }
  return JSON.stringify({ action: 'sendmessage', data });
}

export const PING_FRAME = JSON.stringify({ action: 'ping' });

/** A size for people: 512 B, 32.0 KB, 1.2 MB. */
export function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}
