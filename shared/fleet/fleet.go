// Package fleet holds the ports every pgfleet job shares: finding the members of a cluster,
// running a host script on one of them, storing snapshot sets, and the lease that keeps two runs
// of one job on one cluster from overlapping. The aws and local adapter packages implement them.
package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/pgfleet/pgfleet/shared/hostscripts"
	"github.com/pgfleet/pgfleet/shared/snapset"
)

// Roles a member can have.
const (
	RolePrimary = "primary"
	RoleReplica = "replica"
)

// Member is one instance of a cluster.
type Member struct {
	InstanceID string
	Role       string
	State      string // "running" when usable
	PrivateIP  string
	LaunchTime time.Time
	Tags       map[string]string
	Volumes    []AttachedVolume
}

// AttachedVolume is a block volume attached to a member.
type AttachedVolume struct {
	VolumeID string
	Device   string
	Root     bool
}

// DataVolumes are the member's volumes other than its root volume.
func (m Member) DataVolumes() []AttachedVolume {
	var out []AttachedVolume
	for _, v := range m.Volumes {
		if !v.Root {
			out = append(out, v)
		}
	}
	return out
}

// Finder lists the instances that carry every one of tags; roleTag names the tag holding the
// member's role.
type Finder interface {
	Members(ctx context.Context, tags map[string]string, roleTag string) ([]Member, error)
}

// HostRunner runs an embedded host script on an instance and returns the script's JSON result
// line. A script that ran and failed returns its result line AND an error.
type HostRunner interface {
	Run(ctx context.Context, instanceID string, script hostscripts.Name, args hostscripts.Args) ([]byte, error)
}

// hostscripts.RunFreeze and RunThaw call any HostRunner.
var _ hostscripts.Runner = HostRunner(nil)

// CreateSetRequest asks for one crash-consistent snapshot of several volumes of one instance.
type CreateSetRequest struct {
	InstanceID       string
	ExcludeVolumeIDs []string
	Description      string
	// Tags go on every snapshot at creation, atomically with it (set id and pending status).
	Tags map[string]string
}

// SnapshotStore takes, tags, lists and deletes snapshots.
type SnapshotStore interface {
	// PendingSnapshots counts, per volume, snapshots the storage layer has not finished.
	PendingSnapshots(ctx context.Context, volumeIDs []string) (map[string]int, error)
	// CreateSet snapshots every non-excluded, non-root volume of the instance at one point in time.
	CreateSet(ctx context.Context, req CreateSetRequest) ([]snapset.Snapshot, error)
	// TagSnapshots adds or overwrites tags, per snapshot id.
	TagSnapshots(ctx context.Context, tags map[string]map[string]string) error
	// ListSnapshots lists every snapshot tagged with the cluster, with tags and states.
	ListSnapshots(ctx context.Context, cluster string) ([]snapset.Snapshot, error)
	// DeleteSnapshot deletes one snapshot; a snapshot that is already gone is not an error.
	DeleteSnapshot(ctx context.Context, snapshotID string) error
}

// ErrBadRequest is wrapped by every job's refusal of its input (a malformed event, an invalid
// cluster name or option): the run changed nothing, and a retry of the same input fails again.
var ErrBadRequest = errors.New("bad request")

// ErrLeaseHeld is returned when another run holds the lease.
var ErrLeaseHeld = errors.New("lease is held by another run")

// Lease is a short lock with an expiry, so a crashed run never blocks the next one for long.
type Lease interface {
	// Acquire takes the lease for owner, or fails with ErrLeaseHeld while another owner's
	// unexpired lease exists.
	Acquire(ctx context.Context, key, owner string, ttl time.Duration) error
	// Release gives the lease up if owner still holds it.
	Release(ctx context.Context, key, owner string) error
}

// NewLeaseOwner returns a lease owner unique to one run: the invocation's request id (for the
// logs; it may be empty) and 64 random bits. Duplicate deliveries of one event can share a
// request id, and a lease that let the same owner in twice would let them overlap.
func NewLeaseOwner(requestID string) string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	suffix := hex.EncodeToString(b[:])
	if requestID == "" {
		return "run-" + suffix
	}
	return requestID + "/" + suffix
}

// LeaseReleaseTimeout bounds the release of a lease taken with TakeLease.
const LeaseReleaseTimeout = 10 * time.Second

// TakeLease takes key for owner and returns the function that releases it: detached from ctx's
// cancellation (a run that was cancelled still gives its lease back) and bounded by
// LeaseReleaseTimeout. A release that fails leaves the lease to expire by itself.
func TakeLease(ctx context.Context, l Lease, key, owner string, ttl time.Duration) (release func() error, err error) {
	if err := l.Acquire(ctx, key, owner, ttl); err != nil {
		return nil, fmt.Errorf("take lease %s: %w", key, err)
	}
	return func() error {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), LeaseReleaseTimeout)
		defer cancel()
		if err := l.Release(rctx, key, owner); err != nil {
			return fmt.Errorf("release lease %s (it expires by itself): %w", key, err)
		}
		return nil
	}, nil
}
