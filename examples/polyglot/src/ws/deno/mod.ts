// Reply with the runtime's name and version and the text that was sent.
interface WebSocketEvent {
  body: string;
  requestContext: { connectionId: string };
}

async function postToConnection(connectionId: string, message: unknown): Promise<void> {
  const endpoint = Deno.env.get('AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI');
  const url = `${endpoint}/@connections/${encodeURIComponent(connectionId)}`;
  const response = await fetch(url, { method: 'POST', body: JSON.stringify(message) });
  await response.body?.cancel();
  if (!response.ok) throw new Error(`POST @connections failed: ${response.status}`);
}

export async function handler(event: WebSocketEvent) {
  const { text } = JSON.parse(event.body);
  const reply = { runtime: 'deno', version: Deno.version.deno, text };
  await postToConnection(event.requestContext.connectionId, reply);
  return { statusCode: 200 };
}
