package backup_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/pgfleet/pgfleet/shared/backup"
	"github.com/pgfleet/pgfleet/shared/fleet"
	"github.com/pgfleet/pgfleet/shared/fleet/fleetfake"
	"github.com/pgfleet/pgfleet/shared/hostscripts"
)

func TestHandleTakesTheLeaseAsTheLambdaRequest(t *testing.T) {
	h := newHarness(t)
	ctx := lambdaContext("req-42")
	res, err := h.b.Handle(ctx, json.RawMessage(`{"version":"0","detail-type":"Scheduled Event","source":"aws.events","detail":{"cluster":"main"}}`))
	if err != nil || res.Status != "completed" {
		t.Fatalf("Handle: %+v, %v", res, err)
	}
	calls := h.lease.Calls()
	if len(calls) != 2 || !strings.HasPrefix(calls[0].Owner, "req-42/") || calls[1].Owner != calls[0].Owner {
		t.Fatalf("lease calls %+v, want one owner named after request req-42", calls)
	}
	if h.b.Owner != "run-test" {
		t.Fatalf("Handle changed the shared Backup's owner to %q", h.b.Owner)
	}
}

// TestDuplicateDeliveriesRunOnce: two deliveries of one event at once (same request id, as
// Lambda's retries and duplicate schedule deliveries can have) never both hold the lease: one
// backs up, the other is refused before touching anything.
func TestDuplicateDeliveriesRunOnce(t *testing.T) {
	h := newHarness(t)
	started, release := make(chan struct{}), make(chan struct{})
	// The first run holds the lease while it freezes.
	h.hosts.Hook(string(hostscripts.Freeze), func(ctx context.Context) error {
		close(started)
		<-release
		return nil
	})
	event := json.RawMessage(`{"cluster":"main"}`)
	type outcome struct {
		res backup.Result
		err error
	}
	first := make(chan outcome, 1)
	go func() {
		res, err := h.b.Handle(lambdaContext("req-dup"), event)
		first <- outcome{res, err}
	}()
	<-started
	res, err := h.b.Handle(lambdaContext("req-dup"), event)
	close(release)
	o := <-first
	if o.err != nil || o.res.Status != "completed" {
		t.Fatalf("first delivery: %+v, %v", o.res, o.err)
	}
	if !errors.Is(err, fleet.ErrLeaseHeld) || res.Status != "failed" {
		t.Fatalf("second delivery: %+v, %v; want refused with the lease held", res, err)
	}
	if n := len(h.hosts.CallsOf(hostscripts.Freeze)); n != 1 {
		t.Errorf("%d freezes, want 1", n)
	}
	if n := h.store.Count(fleetfake.OpCreateSet); n != 1 {
		t.Errorf("%d snapshot sets, want 1", n)
	}
}

// lambdaContext is the context Lambda gives the handler of request id.
func lambdaContext(id string) context.Context {
	return lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: id})
}
