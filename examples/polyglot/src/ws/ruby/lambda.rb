# Reply with the runtime's name and version and the text that was sent.
require 'json'
require 'net/http'
require 'uri'

def post_to_connection(connection_id, message)
  endpoint = ENV.fetch('AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI')
  uri = URI("#{endpoint}/@connections/#{URI.encode_www_form_component(connection_id)}")
  response = Net::HTTP.post(uri, message.to_json)
  raise "POST @connections failed: #{response.code}" unless response.is_a?(Net::HTTPSuccess)
end

def handler(event:, context:)
  text = JSON.parse(event['body'])['text']
  reply = { runtime: 'ruby', version: RUBY_VERSION, text: text }
  post_to_connection(event['requestContext']['connectionId'], reply)
  { statusCode: 200 }
end
