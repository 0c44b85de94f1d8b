package ddblease_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/pgfleet/pgfleet/shared/aws/ddblease"
	"github.com/pgfleet/pgfleet/shared/fleet"
	"github.com/pgfleet/pgfleet/shared/local/moto"
)

const table = "pgfleet-leases"

// clock is a settable clock shared by the leases of one test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newLease starts moto, creates the lease table and returns a lease on it with a fake clock.
// Its calls go to moto one at a time: moto checks a condition and writes the item without a lock,
// so concurrent conditional puts could both win there, never in DynamoDB (moto.SerializeCalls).
func newLease(t *testing.T) (*ddblease.Lease, *dynamodb.Client, *clock) {
	t.Helper()
	srv := moto.StartForTest(t)
	ctx := context.Background()
	cfg, err := moto.Config(ctx, srv.URL, config.WithAPIOptions([]func(*middleware.Stack) error{moto.SerializeCalls()}))
	if err != nil {
		t.Fatal(err)
	}
	client := dynamodb.NewFromConfig(cfg)
	_, err = client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatalf("create table: %v", err)
	}
	clk := &clock{t: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)}
	l := ddblease.New(client, table)
	l.Now = clk.Now
	return l, client, clk
}

func TestAcquireRelease(t *testing.T) {
	t.Parallel()
	l, client, _ := newLease(t)
	ctx := context.Background()
	const key = "backup/main"
	if err := l.Acquire(ctx, key, "A", time.Minute); err != nil {
		t.Fatalf("A acquires: %v", err)
	}
	err := l.Acquire(ctx, key, "B", time.Minute)
	if !errors.Is(err, fleet.ErrLeaseHeld) || !strings.Contains(err.Error(), "held by A") {
		t.Fatalf("B acquires while A holds: err = %v, want ErrLeaseHeld naming A", err)
	}
	if err := l.Acquire(ctx, key, "A", time.Minute); err != nil {
		t.Fatalf("A re-acquires its own lease: %v", err)
	}
	// The stored item carries the TTL attribute for DynamoDB's sweeper.
	got, err := client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: key}}})
	if err != nil {
		t.Fatal(err)
	}
	ttl, ok := got.Item["ttl"].(*types.AttributeValueMemberN)
	if !ok || ttl.Value != fmt.Sprint(time.Date(2026, 11, 21, 12, 1, 0, 0, time.UTC).Unix()) {
		t.Fatalf("ttl attribute = %#v, want the expiry in epoch seconds", got.Item["ttl"])
	}
	// B releasing A's lease changes nothing and is not an error.
	if err := l.Release(ctx, key, "B"); err != nil {
		t.Fatalf("B releases A's lease: %v", err)
	}
	if err := l.Acquire(ctx, key, "B", time.Minute); !errors.Is(err, fleet.ErrLeaseHeld) {
		t.Fatalf("B acquires after its own bogus release: err = %v, want ErrLeaseHeld", err)
	}
	if err := l.Release(ctx, key, "A"); err != nil {
		t.Fatalf("A releases: %v", err)
	}
	if err := l.Release(ctx, key, "A"); err != nil {
		t.Fatalf("A releases twice: %v", err)
	}
	if err := l.Acquire(ctx, key, "B", time.Minute); err != nil {
		t.Fatalf("B acquires after A released: %v", err)
	}
	// Keys are independent.
	if err := l.Acquire(ctx, "backup/other", "A", time.Minute); err != nil {
		t.Fatalf("A acquires another key: %v", err)
	}
	if err := l.Acquire(ctx, key, "C", 0); err == nil || errors.Is(err, fleet.ErrLeaseHeld) {
		t.Fatalf("zero ttl: err = %v, want a validation error", err)
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	l, _, clk := newLease(t)
	ctx := context.Background()
	if err := l.Acquire(ctx, "k", "A", time.Second); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if err := l.Acquire(ctx, "k", "B", time.Minute); !errors.Is(err, fleet.ErrLeaseHeld) {
		t.Fatalf("B at the expiry second: err = %v, want ErrLeaseHeld (a lease is held at least its ttl)", err)
	}
	clk.Advance(time.Second)
	if err := l.Acquire(ctx, "k", "B", time.Minute); err != nil {
		t.Fatalf("B after A's lease expired: %v", err)
	}
	if err := l.Acquire(ctx, "k", "A", time.Minute); !errors.Is(err, fleet.ErrLeaseHeld) {
		t.Fatalf("A after B took over: err = %v, want ErrLeaseHeld", err)
	}
	// A's late release must not free B's lease.
	if err := l.Release(ctx, "k", "A"); err != nil {
		t.Fatal(err)
	}
	if err := l.Acquire(ctx, "k", "C", time.Minute); !errors.Is(err, fleet.ErrLeaseHeld) {
		t.Fatalf("C after A's late release: err = %v, want ErrLeaseHeld", err)
	}
}

func TestConcurrentAcquire(t *testing.T) {
	t.Parallel()
	l, _, _ := newLease(t)
	ctx := context.Background()
	const n = 10
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = l.Acquire(ctx, "race", fmt.Sprintf("owner-%d", i), time.Minute)
		})
	}
	close(start)
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, fleet.ErrLeaseHeld):
			t.Errorf("owner-%d: unexpected error %v", i, err)
		}
	}
	if won != 1 {
		t.Fatalf("%d owners won the lease, want exactly 1", won)
	}
}
