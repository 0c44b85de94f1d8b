package backup

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/pgfleet/pgfleet/events"
)

// Handle is the Lambda handler: it reads the schedule's event and runs one backup. The lease
// owner is the Lambda request id, so a retried invocation of the same request can take over its
// own lease.
func (b *Backup) Handle(ctx context.Context, raw json.RawMessage) (Result, error) {
	var req events.BackupRequest
	if err := events.DecodeScheduled(raw, &req); err != nil {
		return b.fail(Result{StepsMS: map[string]float64{}}, fmt.Errorf("%w: %w", ErrBadRequest, err))
	}
	run := *b
	if lc, ok := lambdacontext.FromContext(ctx); ok && lc.AwsRequestID != "" {
		run.Owner = lc.AwsRequestID
	}
	return run.Run(ctx, Request{Cluster: req.Cluster})
}
