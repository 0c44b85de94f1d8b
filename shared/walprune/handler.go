package walprune

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/pgfleet/pgfleet/events"
)

// Handle is the Lambda handler: it reads the schedule's event (a bare request or an EventBridge
// envelope with the request in its detail) and runs one prune. The lease owner is the Lambda
// request id, so a retried invocation of the same request can take over its own lease.
func (p *Pruner) Handle(ctx context.Context, raw json.RawMessage) (Result, error) {
	var req events.WALPruneRequest
	if err := events.DecodeScheduled(raw, &req); err != nil {
		return p.fail(Result{}, p.now(), fmt.Errorf("%w: %w", ErrBadRequest, err))
	}
	run := *p
	if lc, ok := lambdacontext.FromContext(ctx); ok && lc.AwsRequestID != "" {
		run.Owner = lc.AwsRequestID
	}
	return run.Run(ctx, req)
}
