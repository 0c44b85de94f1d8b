// Package fleetfake holds hand-written, in-memory fakes of the ports in package fleet (and of
// config.Source) for fault injection in tests. Each fake records its inputs, keeps enough state to
// behave like the real thing (snapshots with tags and states, a lease with an expiry, a host that
// is frozen or not), and fails on demand: the next N calls of a named operation, every call, or
// whatever a hook decides. Fakes may share a Journal so a test can assert the order of calls
// across ports (lease, freeze, snapshot, thaw...).
//
// The fakes are safe for concurrent use. Like the AWS SDK, every call fails with the context's
// error when its context is already done.
package fleetfake

import (
	"context"
	"fmt"
	"sync"

	"github.com/pgfleet/pgfleet/shared/config"
	"github.com/pgfleet/pgfleet/shared/fleet"
)

// Compile-time checks that the fakes implement the ports.
var (
	_ fleet.Finder        = (*Finder)(nil)
	_ fleet.HostRunner    = (*HostRunner)(nil)
	_ fleet.SnapshotStore = (*SnapshotStore)(nil)
	_ fleet.Lease         = (*Lease)(nil)
	_ config.Source       = (*ConfigSource)(nil)
)

// Operation names, for Faults and the Journal. HostRunner uses the script name ("freeze",
// "thaw") as its operation.
const (
	OpMembers          = "Members"
	OpPendingSnapshots = "PendingSnapshots"
	OpCreateSet        = "CreateSet"
	OpTagSnapshots     = "TagSnapshots"
	OpListSnapshots    = "ListSnapshots"
	OpDeleteSnapshot   = "DeleteSnapshot"
	OpAcquire          = "Acquire"
	OpRelease          = "Release"
	OpLoad             = "Load"
)

// Faults programs failures of named operations. The zero value injects nothing.
type Faults struct {
	mu     sync.Mutex
	queued map[string][]*fault
	hooks  map[string]func(ctx context.Context) error
	counts map[string]int
}

type fault struct {
	n     int // calls left; < 0: every call
	err   error
	after bool // the call takes effect, then returns err (a timed-out call that went through)
}

// FailNext makes the next n calls of op fail with err, doing nothing.
func (f *Faults) FailNext(op string, n int, err error) { f.queue(op, &fault{n: n, err: err}) }

// FailNextAfterEffect makes the next n calls of op take effect and then return err, like an API
// call that succeeded on the server but timed out on the way back.
func (f *Faults) FailNextAfterEffect(op string, n int, err error) {
	f.queue(op, &fault{n: n, err: err, after: true})
}

// FailAlways makes every later call of op fail with err, doing nothing.
func (f *Faults) FailAlways(op string, err error) { f.queue(op, &fault{n: -1, err: err}) }

// Hook runs fn at the start of every call of op, before the fake does anything; an error from fn
// fails the call. fn may cancel contexts, record things or block on channels the test controls.
// A nil fn removes the hook.
func (f *Faults) Hook(op string, fn func(ctx context.Context) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hooks == nil {
		f.hooks = map[string]func(context.Context) error{}
	}
	if fn == nil {
		delete(f.hooks, op)
		return
	}
	f.hooks[op] = fn
}

// Clear removes every fault and hook of op.
func (f *Faults) Clear(op string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.queued, op)
	delete(f.hooks, op)
}

// Count returns how many calls of op were made, failed ones included.
func (f *Faults) Count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[op]
}

func (f *Faults) queue(op string, ft *fault) {
	if ft.n == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.queued == nil {
		f.queued = map[string][]*fault{}
	}
	f.queued[op] = append(f.queued[op], ft)
}

// fire counts a call of op and decides its fate: before fails the call with no effect; after is
// returned once the call took effect.
func (f *Faults) fire(ctx context.Context, op string) (before, after error) {
	f.mu.Lock()
	if f.counts == nil {
		f.counts = map[string]int{}
	}
	f.counts[op]++
	hook := f.hooks[op]
	f.mu.Unlock()

	if err := ctx.Err(); err != nil {
		return err, nil
	}
	if hook != nil {
		if err := hook(ctx); err != nil {
			return err, nil
		}
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.queued[op]
	if len(q) == 0 {
		return nil, nil
	}
	ft := q[0]
	if ft.n > 0 {
		ft.n--
		if ft.n == 0 {
			f.queued[op] = q[1:]
		}
	}
	if ft.after {
		return nil, ft.err
	}
	return ft.err, nil
}

// Journal is a sequence of calls shared by several fakes, so a test can assert their order.
type Journal struct {
	mu      sync.Mutex
	entries []string
}

// Entries returns the calls recorded so far, each as "Op" or "Op:detail" (HostRunner writes
// "Run:freeze", "Run:thaw").
func (j *Journal) Entries() []string {
	if j == nil {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.entries...)
}

func (j *Journal) add(format string, args ...any) {
	if j == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries = append(j.entries, fmt.Sprintf(format, args...))
}
