// This project's protocol (docs/protocol.md) under serverless-offline, for
// `devstack bench --peers`: connections in module-level memory (shared with
// --useInProcess), replies through serverless-offline's @connections,
// unsigned — both in the peer's favour against a real DynamoDB API and SigV4.
const connections = new Set();
const MANAGEMENT = `http://127.0.0.1:${process.env.PEER_WS_PORT || 3001}/@connections/`;

async function post(id, frame) {
  const response = await fetch(MANAGEMENT + encodeURIComponent(id), { method: 'POST', body: JSON.stringify(frame) });
  await response.arrayBuffer();
  if (response.status === 410) connections.delete(id);
  return response.ok;
}

export async function connect(event) {
  connections.add(event.requestContext.connectionId);
  return { statusCode: 200 };
}

export async function disconnect(event) {
  connections.delete(event.requestContext.connectionId);
  return { statusCode: 200 };
}

export async function ping(event) {
  await post(event.requestContext.connectionId, { type: 'pong' });
  return { statusCode: 200 };
}

export async function sendmessage(event) {
  const context = event.requestContext;
  let data = null;
  try {
    data = JSON.parse(event.body).data ?? null;
  } catch {
    await post(context.connectionId, { type: 'error', code: 'invalid_json', message: 'the frame is not JSON' });
    return { statusCode: 200 };
  }
  const frame = { type: 'message', id: context.messageId, from: context.connectionId, data, sentAt: new Date().toISOString() };
  const others = [...connections].filter((id) => id !== context.connectionId);
  const results = await Promise.all(others.map((id) => post(id, frame)));
  await post(context.connectionId, { type: 'sent', recipients: results.filter(Boolean).length });
  return { statusCode: 200 };
}

export async function fallback(event) {
  await post(event.requestContext.connectionId, { type: 'error', code: 'unknown_action', message: 'unknown action' });
  return { statusCode: 200 };
}
