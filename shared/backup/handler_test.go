package backup_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/aws/aws-lambda-go/lambdacontext"
)

func TestHandleTakesTheLeaseAsTheLambdaRequest(t *testing.T) {
	h := newHarness(t)
	ctx := lambdaContext("req-42")
	res, err := h.b.Handle(ctx, json.RawMessage(`{"version":"0","detail-type":"Scheduled Event","source":"aws.events","detail":{"cluster":"main"}}`))
	if err != nil || res.Status != "completed" {
		t.Fatalf("Handle: %+v, %v", res, err)
	}
	calls := h.lease.Calls()
	if len(calls) != 2 || calls[0].Owner != "req-42" || calls[1].Owner != "req-42" {
		t.Fatalf("lease calls %+v, want owner req-42", calls)
	}
	if h.b.Owner != "run-test" {
		t.Fatalf("Handle changed the shared Backup's owner to %q", h.b.Owner)
	}
}

// lambdaContext is the context Lambda gives the handler of request id.
func lambdaContext(id string) context.Context {
	return lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: id})
}
