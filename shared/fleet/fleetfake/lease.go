package fleetfake

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/pgfleet/pgfleet/shared/fleet"
)

// Lease is a fake fleet.Lease kept in memory with an injectable clock. As with the DynamoDB
// lease, an owner may take its own lease again, an expired lease may be taken by anyone, and
// releasing a lease that is not the caller's leaves it alone.
type Lease struct {
	Faults
	Journal *Journal
	// Now is the lease clock (default time.Now).
	Now func() time.Time

	mu    sync.Mutex
	held  map[string]LeaseHolder
	calls []LeaseCall
}

// LeaseHolder is a lease as stored.
type LeaseHolder struct {
	Owner   string
	Expires time.Time
}

// LeaseCall is one recorded Acquire or Release.
type LeaseCall struct {
	Op    string // OpAcquire or OpRelease
	Key   string
	Owner string
	TTL   time.Duration
	Err   error
}

// NewLease returns a lease table with nothing held.
func NewLease() *Lease { return &Lease{held: map[string]LeaseHolder{}} }

// Hold makes owner hold key until expires (another run's lease).
func (l *Lease) Hold(key, owner string, expires time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held[key] = LeaseHolder{Owner: owner, Expires: expires}
}

// Holder returns who holds key now, if its lease has not expired.
func (l *Lease) Holder(key string) (LeaseHolder, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, ok := l.held[key]
	if !ok || !l.now().Before(h.Expires) {
		return LeaseHolder{}, false
	}
	return h, true
}

// Held returns every stored lease, expired ones included.
func (l *Lease) Held() map[string]LeaseHolder {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.held)
}

// Calls returns the recorded calls.
func (l *Lease) Calls() []LeaseCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

// Acquire implements fleet.Lease.
func (l *Lease) Acquire(ctx context.Context, key, owner string, ttl time.Duration) error {
	err := l.acquire(ctx, key, owner, ttl)
	l.record(LeaseCall{Op: OpAcquire, Key: key, Owner: owner, TTL: ttl, Err: err})
	return err
}

func (l *Lease) acquire(ctx context.Context, key, owner string, ttl time.Duration) error {
	l.Journal.add("%s", OpAcquire)
	before, after := l.fire(ctx, OpAcquire)
	if before != nil {
		return before
	}
	if key == "" || owner == "" {
		return errors.New("fleetfake: acquire lease: empty key or owner")
	}
	if ttl <= 0 {
		return fmt.Errorf("fleetfake: acquire lease %s: ttl %s must be positive", key, ttl)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if h, ok := l.held[key]; ok && h.Owner != owner && now.Before(h.Expires) {
		return fmt.Errorf("lease %s: %w: held by %s until %s", key, fleet.ErrLeaseHeld, h.Owner, h.Expires.UTC().Format(time.RFC3339))
	}
	l.held[key] = LeaseHolder{Owner: owner, Expires: now.Add(ttl)}
	return after
}

// Release implements fleet.Lease.
func (l *Lease) Release(ctx context.Context, key, owner string) error {
	err := l.release(ctx, key, owner)
	l.record(LeaseCall{Op: OpRelease, Key: key, Owner: owner, Err: err})
	return err
}

func (l *Lease) release(ctx context.Context, key, owner string) error {
	l.Journal.add("%s", OpRelease)
	before, after := l.fire(ctx, OpRelease)
	if before != nil {
		return before
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if h, ok := l.held[key]; ok && h.Owner == owner {
		delete(l.held, key)
	}
	return after
}

func (l *Lease) record(c LeaseCall) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, c)
}

func (l *Lease) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}
