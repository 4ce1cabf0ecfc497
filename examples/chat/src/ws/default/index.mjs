// $default: any message without a known action gets the list of actions.
import { post } from '@architect/shared/management.mjs'

export async function handler (event) {
  const { connectionId } = event.requestContext
  await post(connectionId, {
    event: 'help',
    actions: [ 'send {text}', 'whois', 'leave' ],
    received: event.body,
  })
  return { statusCode: 200 }
}
