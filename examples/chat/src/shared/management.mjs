// The management API (@connections) from Node.js, with fetch and no SDK.
// AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI is where the emulator serves it.
const endpoint = process.env.AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI

function url (connectionId) {
  return `${endpoint}/@connections/${encodeURIComponent(connectionId)}`
}

export async function post (connectionId, message) {
  const response = await fetch(url(connectionId), { method: 'POST', body: JSON.stringify(message) })
  if (!response.ok) throw new Error(`POST @connections failed: ${response.status}`)
}

export async function info (connectionId) {
  const response = await fetch(url(connectionId))
  if (!response.ok) throw new Error(`GET @connections failed: ${response.status}`)
  return response.json()
}

export async function close (connectionId) {
  const response = await fetch(url(connectionId), { method: 'DELETE' })
  if (!response.ok) throw new Error(`DELETE @connections failed: ${response.status}`)
}
