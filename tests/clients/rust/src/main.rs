//! A provided.al2023 function built on the `lambda_runtime` crate.
//!
//! It answers a WebSocket message event with a body that tells the test which
//! client library ran, the message, the connection id, the Lambda request id
//! and the process id, and it returns an error when the message is "fail".

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    let body = payload.get("body").and_then(Value::as_str).unwrap_or_default();
    let connection_id = payload
        .pointer("/requestContext/connectionId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if body == "fail" {
        return Err("handler failed on purpose".into());
    }
    let reply = json!({
        "client": "lambda_runtime",
        "body": body,
        "connectionId": connection_id,
        "requestId": context.request_id,
        "pid": std::process::id(),
    });
    Ok(json!({"statusCode": 200, "body": reply.to_string()}))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handle)).await
}
