// Command bootstrap is a provided.al2023 function built on aws-lambda-go.
//
// It answers a WebSocket message event with a body that tells the test which
// client library ran, the message, the connection id, the Lambda request id
// and the process id, and it returns an error when the message is "fail".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type reply struct {
	Client       string `json:"client"`
	Body         string `json:"body"`
	ConnectionID string `json:"connectionId"`
	RequestID    string `json:"requestId"`
	Pid          int    `json:"pid"`
}

func handle(ctx context.Context, event events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	if event.Body == "fail" {
		return events.APIGatewayProxyResponse{}, errors.New("handler failed on purpose")
	}
	requestID := ""
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		requestID = lc.AwsRequestID
	}
	body, err := json.Marshal(reply{
		Client:       "aws-lambda-go",
		Body:         event.Body,
		ConnectionID: event.RequestContext.ConnectionID,
		RequestID:    requestID,
		Pid:          os.Getpid(),
	})
	if err != nil {
		return events.APIGatewayProxyResponse{}, err
	}
	return events.APIGatewayProxyResponse{StatusCode: 200, Body: string(body)}, nil
}

func main() {
	lambda.Start(handle)
}
