package walprune

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/pgfleet/pgfleet/events"
	"github.com/pgfleet/pgfleet/shared/fleet"
)

// Handle is the Lambda handler: it reads the schedule's event (a bare request or an EventBridge
// envelope with the request in its detail) and runs one prune. The lease owner names the Lambda
// request id, for the logs, but is unique to this run (fleet.NewLeaseOwner): duplicate
// deliveries of one event can share a request id and run at the same time, and a lease that let
// the same owner in twice would let them overlap. A run killed before it releases the lease
// leaves it to expire (LeaseTTL).
func (p *Pruner) Handle(ctx context.Context, raw json.RawMessage) (Result, error) {
	var req Request
	if err := events.DecodeScheduled(raw, &req); err != nil {
		return p.fail(Result{}, p.now(), fmt.Errorf("%w: %w", fleet.ErrBadRequest, err))
	}
	run := *p
	if lc, ok := lambdacontext.FromContext(ctx); ok && lc.AwsRequestID != "" {
		run.Owner, run.RequestID = fleet.NewLeaseOwner(lc.AwsRequestID), lc.AwsRequestID
	}
	return run.Run(ctx, req)
}
