// Reply with the runtime's name and version and the text that was sent.
const endpoint = process.env.AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI

async function postToConnection (connectionId, message) {
  const url = `${endpoint}/@connections/${encodeURIComponent(connectionId)}`
  const response = await fetch(url, { method: 'POST', body: JSON.stringify(message) })
  if (!response.ok) throw new Error(`POST @connections failed: ${response.status}`)
}

export async function handler (event) {
  const { text } = JSON.parse(event.body)
  const reply = { runtime: 'node', version: process.versions.node, text }
  await postToConnection(event.requestContext.connectionId, reply)
  return { statusCode: 200 }
}
