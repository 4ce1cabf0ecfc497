// Echo the message back through the management API, on a kept-alive connection.
import http from 'node:http'

const endpoint = new URL(process.env.AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI)
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })

function post (connectionId, body) {
  return new Promise((resolve, reject) => {
    const request = http.request({
      host: endpoint.hostname,
      port: endpoint.port,
      method: 'POST',
      path: `/@connections/${encodeURIComponent(connectionId)}`,
      agent,
    }, (response) => {
      response.resume()
      response.on('end', resolve)
    })
    request.on('error', reject)
    request.end(body)
  })
}

export async function handler (event) {
  await post(event.requestContext.connectionId, event.body)
  return { statusCode: 200 }
}
