// leave: say goodbye, then close the connection from the server side.
import { close, post } from '@architect/shared/management.mjs'

export async function handler (event) {
  const { connectionId } = event.requestContext
  await post(connectionId, { event: 'bye' })
  await close(connectionId)
  return { statusCode: 200 }
}
