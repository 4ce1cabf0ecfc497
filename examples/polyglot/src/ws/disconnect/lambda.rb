# Log who left; API Gateway ignores what $disconnect returns.
def handler(event:, context:)
  context_info = event['requestContext']
  puts "disconnected: #{context_info['connectionId']} (#{context_info['disconnectStatusCode']})"
  { statusCode: 200 }
end
