// A handler for aws-lambda-ric, run by `aws-lambda-ric index.handler`.
//
// It answers a WebSocket message event with a body that tells the test which
// client library ran, the message, the connection id, the Lambda request id
// and the process id, and it throws when the message is "fail".
exports.handler = async (event, context) => {
  if (event.body === "fail") {
    throw new Error("handler failed on purpose");
  }
  const reply = {
    client: "aws-lambda-ric",
    body: event.body,
    connectionId: event.requestContext.connectionId,
    requestId: context.awsRequestId,
    pid: process.pid,
  };
  return { statusCode: 200, body: JSON.stringify(reply) };
};
