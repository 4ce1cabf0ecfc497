// Admit every client.
export async function handler (event) {
  console.log(`connected: ${event.requestContext.connectionId}`)
  return { statusCode: 200 }
}
