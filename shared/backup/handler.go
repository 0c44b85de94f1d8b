package backup

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/pgfleet/pgfleet/events"
	"github.com/pgfleet/pgfleet/shared/fleet"
)

// Handle is the Lambda handler: it reads the schedule's event and runs one backup. The lease
// owner is unique to this invocation (the Lambda request id plus random bits): duplicate
// deliveries of one event can share a request id, and must not both hold the lease.
func (b *Backup) Handle(ctx context.Context, raw json.RawMessage) (Result, error) {
	var req Request
	if err := events.DecodeScheduled(raw, &req); err != nil {
		return b.fail(Result{StepsMS: map[string]float64{}}, fmt.Errorf("%w: %w", fleet.ErrBadRequest, err))
	}
	run := *b
	requestID := ""
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		requestID = lc.AwsRequestID
	}
	run.Owner, run.RequestID = fleet.NewLeaseOwner(requestID), requestID
	return run.Run(ctx, req)
}
