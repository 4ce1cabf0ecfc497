// whois: reply with what the management API knows of this connection.
import { info, post } from '@architect/shared/management.mjs'

export async function handler (event) {
  const { connectionId } = event.requestContext
  const connection = await info(connectionId)
  await post(connectionId, { event: 'whois', connectionId, ...connection })
  return { statusCode: 200 }
}
