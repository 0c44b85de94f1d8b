// Package walprune deletes archived WAL that no retained snapshot set needs: the walprune
// function's logic, run on a schedule for one cluster at a time.
//
// One run: when the configuration source can list clusters, check that no other cluster's
// archive shares keys with this one; take the lease "walprune/<cluster>" so two runs never
// overlap (the lease owner is unique to the run, so two deliveries of one event never both hold
// it); find the boundary, the
// LOWEST checkpoint redo point over every set of the cluster that is completed or may still
// complete (pending, or tagged completed while a snapshot is still pending in EBS; failed sets
// and sets with a volume missing do not count), not the redo point of the oldest set: a newer
// set taken from a lagging replica, or on a timeline that branched earlier, can need older WAL
// (snapset.PruneBoundary); cross-check every such set's redo tags (pgfleet:redo-wal-file must be
// the segment that holds pgfleet:redo-lsn on pgfleet:timeline with the archive's segment size);
// move the boundary back by the configured margin (archive.marginSegments) and, when the event
// names one, to an operator's earlier keepFrom segment (a later one is ignored: it can only make
// pruning more conservative); list the archive in key order up to the first complete segment at
// or past the boundary and no further (wal.Collect); plan the deletions with the rules of
// pg_archivecleanup (wal.NewPlan); delete in batches of at most 1000 keys, a few batches in
// flight. Timeline history files, archive metadata and names of no known form are never
// deleted, and no key outside the layout's root prefix is ever sent (a plain archive at the
// bucket root owns the keys without a "/").
//
// A run refuses, deleting nothing, when the cluster has no completed set; when a set that bounds
// the prune has a redo tag that is missing, malformed, different between its snapshots or
// inconsistent with the others (wrapping ErrBoundaryTag); when the configuration source can
// list clusters (config.Lister) and another cluster's archive shares the bucket and overlaps
// this archive's keys (ErrSharedArchive: each pruner would delete the other's WAL with its own
// boundary), or the clusters cannot be listed or read to tell; when the boundary lies ahead of
// the newest archived segment (wal.ErrBoundaryAhead); or on bad input (unknown cluster,
// malformed event, a keepFrom that is not a WAL segment name, no archive section in the
// configuration, a bucket that does not exist or cannot be listed).
//
// A run stops cleanly between batches, with Complete false, when it reaches the per-run cap on
// deletions (archive.maxDeletesPerRun, lowered by the event's maxDeletes) or when less than
// SafetyMargin is left before its context's deadline; the next run lists again and continues.
// A dry run returns the plan and deletes nothing.
//
// Versioned buckets: keys are deleted without a version id, so S3 writes delete markers and
// keeps the deleted WAL as noncurrent versions until the bucket's lifecycle rule
// (NoncurrentVersionExpiration) expires them. The result says when a bucket is versioned.
package walprune

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/pgfleet/pgfleet/shared/config"
	"github.com/pgfleet/pgfleet/shared/fleet"
	"github.com/pgfleet/pgfleet/shared/logctx"
	"github.com/pgfleet/pgfleet/shared/metrics"
	"github.com/pgfleet/pgfleet/shared/snapset"
	"github.com/pgfleet/pgfleet/shared/wal"
)

// Snapshots lists a cluster's snapshots with their tags and states (fleet.SnapshotStore does).
type Snapshots interface {
	ListSnapshots(ctx context.Context, cluster string) ([]snapset.Snapshot, error)
}

var _ Snapshots = fleet.SnapshotStore(nil)

// Defaults of the Pruner's optional fields.
const (
	// DefaultSafetyMargin is the time left before the deadline at which no new batch starts:
	// enough for the batches in flight to finish, retries included.
	DefaultSafetyMargin = 30 * time.Second
	// DefaultLeaseTTL outlasts the longest Lambda run (15 minutes).
	DefaultLeaseTTL = 15 * time.Minute
	// MaxResultKeys bounds the planned keys and per-key errors a result lists.
	MaxResultKeys = 1000
)

// Run statuses.
const (
	StatusCompleted = "completed" // everything before the boundary is deleted
	StatusPartial   = "partial"   // stopped early or some keys failed; the next run continues
	StatusPlanned   = "planned"   // dry run: nothing deleted
	StatusFailed    = "failed"    // refused or failed; see Reason
)

// Reasons a run stopped before the end of its plan.
const (
	StopMaxDeletes = "maxDeletes"
	StopDeadline   = "deadline"
	StopError      = "error"
)

// Errors a caller can test for.
var (
	ErrNoArchive      = errors.New("cluster configuration has no archive section")
	ErrNoCompletedSet = snapset.ErrNoCompletedSet
	ErrBoundaryTag    = snapset.ErrBoundaryTag
	ErrUnreadableSet  = errors.New("snapshot with unreadable set tags")
	ErrKeyOutside     = errors.New("planned key outside the archive")
	// ErrSharedArchive: another cluster's configuration points at keys of this archive; each
	// pruner would delete the other's WAL with its own boundary.
	ErrSharedArchive    = errors.New("archive shared with another cluster")
	ErrIncompleteDelete = errors.New("some objects were not deleted")
)

// Pruner runs WAL prunes. Configs, Snapshots, Archive and Lease are required.
type Pruner struct {
	Configs   config.Source
	Snapshots Snapshots
	Archive   wal.Archive
	Lease     fleet.Lease
	// Metrics receives one EMF point per run (optional).
	Metrics metrics.Sink
	Log     *slog.Logger
	Now     func() time.Time
	// Owner identifies this run in the lease and must be unique to it (Handle sets
	// fleet.NewLeaseOwner of the Lambda request id); when empty, Run makes one.
	Owner string
	// RequestID is the Lambda request id, on every log line of the run.
	RequestID string
	// SafetyMargin: no batch starts once less than this is left before the context's
	// deadline (0 means DefaultSafetyMargin).
	SafetyMargin time.Duration
	// LeaseTTL is the lease expiry (0 means DefaultLeaseTTL).
	LeaseTTL time.Duration
}

// Request asks for one WAL prune of a cluster's archive (the function's event, decoded by
// events.DecodeScheduled).
type Request struct {
	Cluster string `json:"cluster"`
	// DryRun returns the plan without deleting anything.
	DryRun bool `json:"dryRun,omitempty"`
	// KeepFrom is an operator's WAL segment name: nothing at or after it is deleted. It can only
	// make pruning more conservative.
	KeepFrom string `json:"keepFrom,omitempty"`
	// MaxDeletes lowers the configured per-run cap on deletions.
	MaxDeletes int `json:"maxDeletes,omitempty"`
}

// Result is what a run returns (and what the Lambda answers).
type Result struct {
	Cluster string `json:"cluster"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	DryRun  bool   `json:"dryRun"`

	Layout string `json:"layout,omitempty"`
	Bucket string `json:"bucket,omitempty"`
	// Prefix is the layout's root prefix: no key outside it is touched.
	Prefix string `json:"prefix,omitempty"`
	// Versioned: the bucket keeps versions, so deletions wrote delete markers and the data
	// stays as noncurrent versions until the bucket's lifecycle rule expires them.
	Versioned  bool   `json:"versioned"`
	Versioning string `json:"versioning,omitempty"`

	// Boundary is the first segment kept (timeline ignored), BoundarySource what set it:
	// "set" (the set's redo WAL file and the margin) or "keepFrom".
	Boundary       string `json:"boundary,omitempty"`
	BoundarySource string `json:"boundarySource,omitempty"`
	// BoundarySetID and SetRedoWALFile name the set with the lowest redo point among those
	// completed or that may still complete, and its redo WAL file.
	BoundarySetID  string `json:"boundarySetId,omitempty"`
	SetRedoWALFile string `json:"setRedoWalFile,omitempty"`
	MarginSegments int    `json:"marginSegments"`
	KeepFrom       string `json:"keepFrom,omitempty"`
	// NewestListed is the newest archived segment the listing saw (it stops at the boundary).
	NewestListed string `json:"newestListed,omitempty"`
	// MaxDeletes is the cap this run applied.
	MaxDeletes int `json:"maxDeletes"`

	Listed       int   `json:"listed"`
	Planned      int   `json:"planned"`
	PlannedBytes int64 `json:"plannedBytes"`
	Deleted      int   `json:"deleted"`
	DeletedBytes int64 `json:"deletedBytes"`
	// Kept counts WAL files at or after the boundary that the listing saw, and backup history
	// files.
	Kept int `json:"kept"`
	// Deferred counts files before the boundary left for a later run by the cap.
	Deferred int `json:"deferred"`
	// NotSent counts planned keys not sent because the run stopped (deadline, error).
	NotSent int `json:"notSent"`
	// Protected counts archive metadata and timeline history files (never deleted).
	Protected int `json:"protected"`
	// Unrecognized counts keys of the archive whose names match no known form (kept).
	Unrecognized int `json:"unrecognized"`
	// Outside counts listed keys that are not part of the layout (ignored).
	Outside int `json:"outside"`
	// DeleteErrors counts keys S3 reported as not deleted, or that were in a failed request.
	DeleteErrors int            `json:"deleteErrors"`
	Errors       []wal.KeyError `json:"errors,omitempty"`

	ListRequests   int `json:"listRequests"`
	DeleteRequests int `json:"deleteRequests"`
	Requests       int `json:"requests"`

	// Complete is true when everything before the boundary is deleted; false after a dry run
	// or when the run stopped early (StoppedBy) or some keys failed.
	Complete  bool   `json:"complete"`
	StoppedBy string `json:"stoppedBy,omitempty"`

	// PlannedKeys lists the first MaxResultKeys planned keys, oldest first (dry runs only).
	PlannedKeys        []string `json:"plannedKeys,omitempty"`
	PlannedKeysOmitted int      `json:"plannedKeysOmitted,omitempty"`

	Warnings   []string `json:"warnings,omitempty"`
	DurationMS float64  `json:"durationMs"`

	// Plan is the whole plan, for callers in Go (the local site, tests).
	Plan wal.Plan `json:"-"`
}

func (p *Pruner) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Pruner) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.Default()
}

// runLog is the logger of a run on cluster: the cluster and the request id on every line.
func (p *Pruner) runLog(cluster string) *slog.Logger {
	return p.log().With("cluster", cluster, "request_id", p.RequestID)
}

func (p *Pruner) safetyMargin() time.Duration {
	if p.SafetyMargin > 0 {
		return p.SafetyMargin
	}
	return DefaultSafetyMargin
}

func (p *Pruner) leaseTTL() time.Duration {
	if p.LeaseTTL > 0 {
		return p.LeaseTTL
	}
	return DefaultLeaseTTL
}

// Run prunes the WAL archive of req.Cluster. A run stopped by the cap or the deadline returns
// no error (Complete false); keys that failed to delete return an error wrapping
// ErrIncompleteDelete along with the result.
func (p *Pruner) Run(ctx context.Context, req Request) (res Result, err error) {
	start := p.now()
	res = Result{Cluster: req.Cluster, DryRun: req.DryRun, KeepFrom: req.KeepFrom}
	if err := checkRequest(req); err != nil {
		return p.fail(res, start, err)
	}
	if p.Configs == nil || p.Snapshots == nil || p.Archive == nil || p.Lease == nil {
		return p.fail(res, start, errors.New("walprune: Configs, Snapshots, Archive and Lease are required"))
	}
	cfg, err := p.Configs.Load(ctx, req.Cluster)
	if err != nil {
		return p.fail(res, start, fmt.Errorf("load configuration: %w", err))
	}
	if cfg.Archive == nil {
		return p.fail(res, start, fmt.Errorf("cluster %s: %w: add \"archive\" with layout, bucket and prefix to prune its WAL", cfg.Name, ErrNoArchive))
	}
	arch := *cfg.Archive
	res.Layout, res.Bucket, res.MarginSegments = arch.Layout, arch.Bucket, arch.MarginSegments
	layout, err := NewLayout(arch)
	if err != nil {
		return p.fail(res, start, fmt.Errorf("cluster %s: archive: %w", cfg.Name, err))
	}
	roots := rootPrefixes(layout)
	res.Prefix = strings.Join(roots, ",")
	if arch.Bucket == "" {
		return p.fail(res, start, fmt.Errorf("cluster %s: archive.bucket is empty", cfg.Name))
	}
	if err := p.checkSharedArchive(ctx, cfg.Name, arch, layout); err != nil {
		return p.fail(res, start, err)
	}
	// Every line of the run, the adapters' included, names the cluster and the request.
	log := p.runLog(cfg.Name).With("bucket", arch.Bucket)
	ctx = logctx.With(ctx, log)

	leaseKey := "walprune/" + cfg.Name
	owner := p.Owner
	if owner == "" {
		// Unique to this run: two runs started at once must never share the lease.
		owner = fleet.NewLeaseOwner("")
	}
	lctx, _ := logctx.Step(ctx, "lease")
	release, err := fleet.TakeLease(lctx, p.Lease, leaseKey, owner, p.leaseTTL())
	if err != nil {
		return p.fail(res, start, err)
	}
	defer func() {
		if rerr := release(); rerr != nil {
			log.Warn("release lease", "step", "lease", "error", rerr.Error())
			res.Warnings = append(res.Warnings, "lease not released: "+rerr.Error())
		}
	}()

	res, err = p.runLocked(ctx, log, cfg, arch, layout, roots, req, res)
	res.DurationMS = ms(p.now().Sub(start))
	p.emit(cfg.Name, res, err)
	if err != nil {
		return p.fail(res, start, err)
	}
	log.Info("wal prune finished", "status", res.Status, "boundary", res.Boundary, "set_id", res.BoundarySetID,
		"deleted", res.Deleted, "deleted_bytes", res.DeletedBytes, "planned", res.Planned, "complete", res.Complete,
		"stopped_by", res.StoppedBy, "requests", res.Requests, "versioned", res.Versioned)
	return res, nil
}

// checkRequest rejects bad input before anything is read.
func checkRequest(req Request) error {
	if !config.ValidName(req.Cluster) {
		return fmt.Errorf("%w: cluster %q is not a valid cluster name", fleet.ErrBadRequest, req.Cluster)
	}
	if req.KeepFrom != "" {
		if _, err := wal.ParseSegmentName(req.KeepFrom); err != nil {
			return fmt.Errorf("%w: keepFrom: %w", fleet.ErrBadRequest, err)
		}
	}
	if req.MaxDeletes < 0 {
		return fmt.Errorf("%w: maxDeletes %d: give a positive number to lower the configured cap, or leave it out", fleet.ErrBadRequest, req.MaxDeletes)
	}
	return nil
}

func (p *Pruner) fail(res Result, start time.Time, err error) (Result, error) {
	res.Status = StatusFailed
	res.Reason = err.Error()
	res.Complete = false
	if res.DurationMS == 0 {
		res.DurationMS = ms(p.now().Sub(start))
	}
	p.runLog(res.Cluster).Error("wal prune failed", "step", "done", "error", err.Error(),
		"deleted", res.Deleted, "delete_errors", res.DeleteErrors)
	return res, err
}

func (p *Pruner) runLocked(ctx context.Context, log *slog.Logger, cfg config.Cluster, arch config.Archive, layout wal.Layout, roots []string, req Request, res Result) (Result, error) {
	// The boundary: the lowest redo point over the sets that are completed or may still be.
	segSize := int64(arch.SegmentSizeMiB) << 20
	bound, err := p.boundarySet(ctx, cfg.Name, segSize)
	if err != nil {
		return res, err
	}
	set, redo := bound.Set, bound.Redo.WALFile
	res.BoundarySetID, res.SetRedoWALFile = set.SetID, redo
	fromSet, err := wal.Boundary(redo, arch.MarginSegments, "", segSize)
	if err != nil {
		return res, fmt.Errorf("set %s: %w: %w", set.SetID, ErrBoundaryTag, err)
	}
	boundary, err := wal.Boundary(redo, arch.MarginSegments, req.KeepFrom, segSize)
	if err != nil {
		return res, fmt.Errorf("%w: %w", fleet.ErrBadRequest, err)
	}
	res.Boundary, res.BoundarySource = boundary.String(), "set"
	if boundary.Compare(fromSet) < 0 {
		res.BoundarySource = "keepFrom"
	} else if req.KeepFrom != "" {
		res.Warnings = append(res.Warnings, fmt.Sprintf("keepFrom %s is not before the set's boundary %s: ignored (it can only keep more)", req.KeepFrom, fromSet))
	}
	res.MaxDeletes = maxDeletes(arch, req)
	if req.MaxDeletes > res.MaxDeletes {
		res.Warnings = append(res.Warnings, fmt.Sprintf("maxDeletes %d is above the configured cap %d: the cap applies", req.MaxDeletes, res.MaxDeletes))
	}
	log = log.With("boundary", res.Boundary, "set_id", set.SetID)

	// The bucket, then the listing, bounded by the deadline minus the safety margin.
	info, err := p.Archive.CheckBucket(ctx, arch.Bucket)
	if err != nil {
		return res, fmt.Errorf("check archive bucket: %w", err)
	}
	res.Versioning, res.Versioned = info.Versioning, info.Versioned()
	if res.Versioned {
		res.Warnings = append(res.Warnings, fmt.Sprintf("bucket %s has versioning %s: deletions write delete markers and the WAL stays as noncurrent versions until the bucket's lifecycle rule expires them", arch.Bucket, info.Versioning))
	}
	listCtx := ctx
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		listCtx, cancel = context.WithDeadline(ctx, deadline.Add(-p.safetyMargin()))
		defer cancel()
	}
	counted := &countingLister{next: p.Archive.Lister(arch.Bucket)}
	objects, err := wal.Collect(listCtx, counted, layout, boundary)
	res.ListRequests = counted.requests()
	res.Requests = res.ListRequests
	if err != nil {
		if listCtx.Err() != nil && ctx.Err() == nil {
			return res, fmt.Errorf("list the archive: less than the safety margin (%s) left before the deadline: %w", p.safetyMargin(), err)
		}
		return res, fmt.Errorf("list the archive: %w", err)
	}
	res.Listed = len(objects)

	plan, err := wal.NewPlan(objects, layout, boundary, wal.Options{MaxDeletes: res.MaxDeletes})
	if err != nil {
		return res, fmt.Errorf("plan: %w", err)
	}
	res.Plan = plan
	res.Planned, res.PlannedBytes = len(plan.Delete), plan.DeleteBytes
	res.Kept, res.Deferred, res.Protected = plan.Kept, plan.Deferred, plan.Protected
	res.Unrecognized, res.Outside = plan.Unrecognized, plan.Outside
	if plan.HasNewest {
		res.NewestListed = plan.Newest.String()
	}
	if err := checkPlan(plan, layout, roots, boundary); err != nil {
		return res, err
	}
	if plan.Unrecognized > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%d keys under %s match no WAL file form and were kept", plan.Unrecognized, res.Prefix))
	}

	if req.DryRun {
		res.Status = StatusPlanned
		for i, o := range plan.Delete {
			if i == MaxResultKeys {
				res.PlannedKeysOmitted = len(plan.Delete) - i
				break
			}
			res.PlannedKeys = append(res.PlannedKeys, o.Key)
		}
		return res, nil
	}
	return p.deleteAll(ctx, log, arch.Bucket, plan, res)
}

// deleteAll sends the plan's batches and tallies the answers.
func (p *Pruner) deleteAll(ctx context.Context, log *slog.Logger, bucket string, plan wal.Plan, res Result) (Result, error) {
	batches := plan.Batches(wal.MaxBatch)
	keys := make([][]string, len(batches))
	for i, b := range batches {
		keys[i] = make([]string, len(b))
		for j, o := range b {
			keys[i][j] = o.Key
		}
	}
	deadline, hasDeadline := ctx.Deadline()
	stoppedByDeadline := false
	proceed := func() bool {
		if hasDeadline && deadline.Sub(p.now()) < p.safetyMargin() {
			stoppedByDeadline = true
			return false
		}
		return true
	}
	var results []wal.BatchResult
	if len(keys) > 0 {
		results = p.Archive.DeleteBatches(ctx, bucket, keys, proceed)
	}
	sent := 0
	var batchErrs []error
	for _, r := range results {
		if r.Index < 0 || r.Index >= len(batches) {
			return res, fmt.Errorf("delete batches: the archive answered for batch %d of %d", r.Index, len(batches))
		}
		batch := batches[r.Index]
		sent += len(batch)
		res.DeleteRequests += r.Requests
		if r.Err != nil {
			batchErrs = append(batchErrs, r.Err)
			res.DeleteErrors += len(batch)
			log.Error("delete batch failed", "batch", r.Index, "keys", len(batch), "error", r.Err.Error())
			continue
		}
		failed := make(map[string]bool, len(r.Failed))
		for _, ke := range r.Failed {
			failed[ke.Key] = true
			if len(res.Errors) < MaxResultKeys {
				res.Errors = append(res.Errors, ke)
			}
		}
		for _, o := range batch {
			if failed[o.Key] {
				res.DeleteErrors++
				continue
			}
			res.Deleted++
			res.DeletedBytes += o.Size
		}
	}
	res.Requests = res.ListRequests + res.DeleteRequests
	res.NotSent = len(plan.Delete) - sent
	switch {
	case len(batchErrs) > 0:
		res.StoppedBy = StopError
	case res.NotSent > 0 && stoppedByDeadline:
		res.StoppedBy = StopDeadline
	case res.NotSent > 0:
		res.StoppedBy = StopError
		if err := ctx.Err(); err != nil {
			batchErrs = append(batchErrs, err)
		}
	case plan.Deferred > 0:
		res.StoppedBy = StopMaxDeletes
	}
	res.Complete = res.StoppedBy == "" && res.DeleteErrors == 0
	res.Status = StatusCompleted
	if !res.Complete {
		res.Status = StatusPartial
	}
	if res.DeleteErrors > 0 || len(batchErrs) > 0 {
		err := fmt.Errorf("cluster %s: %w: %d of %d planned keys not deleted", res.Cluster, ErrIncompleteDelete, res.DeleteErrors+res.NotSent, len(plan.Delete))
		if len(batchErrs) > 0 {
			err = fmt.Errorf("%w: %w", err, errors.Join(batchErrs...))
		} else if len(res.Errors) > 0 {
			e := res.Errors[0]
			err = fmt.Errorf("%w (first: %s: %s %s)", err, e.Key, e.Code, e.Message)
		}
		return res, err
	}
	if res.StoppedBy == StopDeadline {
		log.Warn("stopped before the deadline; the next run continues", "not_sent", res.NotSent)
	}
	return res, nil
}

// boundarySet returns what bounds the prune of the cluster (snapset.PruneBoundary): the set with
// the lowest redo point among those completed or that may still complete, its tags
// cross-checked. Unreadable snapshots refuse the run: one of them could belong to a set that
// needs older WAL.
func (p *Pruner) boundarySet(ctx context.Context, cluster string, segSize int64) (snapset.PruneBound, error) {
	snaps, err := p.Snapshots.ListSnapshots(ctx, cluster)
	if err != nil {
		return snapset.PruneBound{}, fmt.Errorf("list snapshot sets of %s: %w", cluster, err)
	}
	sets, unreadable := snapset.Group(snaps)
	if len(unreadable) > 0 {
		ids := make([]string, 0, len(unreadable))
		for _, s := range unreadable {
			ids = append(ids, s.ID)
		}
		return snapset.PruneBound{}, fmt.Errorf("cluster %s: %w: %s (fix or delete them; WAL they may need is kept until then)", cluster, ErrUnreadableSet, strings.Join(ids, ", "))
	}
	mine := sets[:0]
	for _, s := range sets {
		if s.Cluster == cluster {
			mine = append(mine, s)
		}
	}
	bound, err := snapset.PruneBoundary(mine, segSize)
	switch {
	case errors.Is(err, ErrNoCompletedSet):
		return snapset.PruneBound{}, fmt.Errorf("cluster %s: %w: nothing is pruned until a backup completes", cluster, err)
	case errors.Is(err, ErrBoundaryTag):
		return snapset.PruneBound{}, fmt.Errorf("cluster %s: %w: nothing is pruned until the set's tags are fixed or the set is deleted", cluster, err)
	case err != nil:
		return snapset.PruneBound{}, fmt.Errorf("cluster %s: %w", cluster, err)
	}
	return bound, nil
}

// checkSharedArchive refuses the archive when another cluster's configuration points at keys of
// it (same bucket, key spaces that overlap: wal.Overlap), since each cluster's pruner would
// delete the other's WAL with its own boundary. Only a configuration source that can list its
// clusters (config.Lister) can tell; when it can, a cluster that cannot be listed or read
// refuses the run too, as nothing then rules the overlap out.
func (p *Pruner) checkSharedArchive(ctx context.Context, cluster string, arch config.Archive, layout wal.Layout) error {
	lister, ok := p.Configs.(config.Lister)
	if !ok {
		return nil
	}
	names, err := lister.List(ctx)
	if err != nil {
		return fmt.Errorf("cluster %s: check that no other cluster shares the archive: %w", cluster, err)
	}
	for _, name := range names {
		if name == cluster {
			continue
		}
		other, err := p.Configs.Load(ctx, name)
		if err != nil {
			return fmt.Errorf("cluster %s: check that cluster %s does not share the archive: %w", cluster, name, err)
		}
		if other.Archive == nil || other.Archive.Bucket != arch.Bucket {
			continue
		}
		ol, err := NewLayout(*other.Archive)
		if err != nil {
			return fmt.Errorf("cluster %s: check that cluster %s does not share the archive: its archive: %w", cluster, name, err)
		}
		if wal.Overlap(layout, ol) {
			return fmt.Errorf("cluster %s: %w: cluster %s's archive (%s, prefix %q) and this one (%s, prefix %q) share keys in bucket %s: give each cluster its own prefix or pgBackRest stanza",
				cluster, ErrSharedArchive, name, other.Archive.Layout, strings.Join(rootPrefixes(ol), ","), arch.Layout, strings.Join(rootPrefixes(layout), ","), arch.Bucket)
		}
	}
	return nil
}

// maxDeletes is the configured cap (its default when unset), lowered by the event's.
func maxDeletes(arch config.Archive, req Request) int {
	limit := arch.MaxDeletesPerRun
	if limit <= 0 {
		limit = config.DefaultMaxDeletesPerRun
	}
	if req.MaxDeletes > 0 && req.MaxDeletes < limit {
		limit = req.MaxDeletes
	}
	return limit
}

// NewLayout builds the wal layout of a cluster's archive configuration. The configuration's
// Prefix is pgBackRest's repo path, or the WAL-G or plain key prefix; options a layout does not
// take are refused by wal.NewLayout.
func NewLayout(a config.Archive) (wal.Layout, error) {
	switch a.Layout {
	case "pgbackrest":
		return wal.NewLayout(wal.LayoutPgBackRest, wal.LayoutOptions{RepoPath: a.Prefix, Stanza: a.Stanza, Extension: a.Extension})
	case "walg":
		return wal.NewLayout(wal.LayoutWALG, wal.LayoutOptions{Prefix: a.Prefix, Stanza: a.Stanza, Extension: a.Extension})
	case "plain":
		return wal.NewLayout(wal.LayoutPlain, wal.LayoutOptions{Prefix: a.Prefix, Stanza: a.Stanza, Extension: a.Extension})
	}
	return nil, fmt.Errorf("layout %q: use pgbackrest, walg or plain", a.Layout)
}

// rootPrefixes are the prefixes of the layout's first listings: every key of the archive
// starts with one of them.
func rootPrefixes(l wal.Layout) []string {
	var out []string
	for _, r := range l.Roots() {
		out = append(out, r.Prefix)
	}
	return out
}

// checkPlan makes sure, before anything is sent, that every planned key is inside the archive's
// root prefix and is a segment or partial segment of the layout before the boundary. An empty
// root is a plain archive at the bucket root: every key starts with it, and the layout's Parse
// (which owns only the keys without a "/" there) keeps the rest of the bucket out.
func checkPlan(plan wal.Plan, layout wal.Layout, roots []string, boundary wal.Segment) error {
	for _, o := range plan.Delete {
		inside := false
		for _, r := range roots {
			if strings.HasPrefix(o.Key, r) {
				inside = true
				break
			}
		}
		if !inside {
			return fmt.Errorf("%w: %q is not under %q: nothing deleted", ErrKeyOutside, o.Key, strings.Join(roots, ", "))
		}
		f, ok := layout.Parse(o.Key)
		if !ok || (f.Kind != wal.KindSegment && f.Kind != wal.KindPartial) || !f.Segment.Less(boundary) {
			return fmt.Errorf("%w: %q is not a WAL segment before %s: nothing deleted", ErrKeyOutside, o.Key, boundary)
		}
	}
	return nil
}

// countingLister counts the pages read, or the requests sent when the lister counts them.
type countingLister struct {
	next  wal.Lister
	pages int
}

func (c *countingLister) ListPage(ctx context.Context, req wal.ListRequest, token string) (wal.Page, error) {
	c.pages++
	return c.next.ListPage(ctx, req, token)
}

func (c *countingLister) requests() int {
	if rc, ok := c.next.(wal.RequestCounter); ok {
		return int(rc.Requests())
	}
	return c.pages
}

func (p *Pruner) emit(cluster string, res Result, err error) {
	if p.Metrics == nil {
		return
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	p.Metrics.Put(map[string]string{"Cluster": cluster},
		metrics.Value{Name: "WALPruneSuccess", Unit: metrics.Count, Value: b(err == nil)},
		metrics.Value{Name: "WALPruneComplete", Unit: metrics.Count, Value: b(res.Complete)},
		metrics.Value{Name: "WALDeletedObjects", Unit: metrics.Count, Value: float64(res.Deleted)},
		metrics.Value{Name: "WALDeletedBytes", Unit: metrics.Bytes, Value: float64(res.DeletedBytes)},
		metrics.Value{Name: "WALPlannedObjects", Unit: metrics.Count, Value: float64(res.Planned)},
		metrics.Value{Name: "WALDeferredObjects", Unit: metrics.Count, Value: float64(res.Deferred + res.NotSent)},
		metrics.Value{Name: "WALDeleteErrors", Unit: metrics.Count, Value: float64(res.DeleteErrors)},
		metrics.Value{Name: "WALKeptObjects", Unit: metrics.Count, Value: float64(res.Kept)},
		metrics.Value{Name: "WALProtectedObjects", Unit: metrics.Count, Value: float64(res.Protected)},
		metrics.Value{Name: "WALUnrecognized", Unit: metrics.Count, Value: float64(res.Unrecognized)},
		metrics.Value{Name: "WALPruneRequests", Unit: metrics.Count, Value: float64(res.Requests)},
		metrics.Value{Name: "WALPruneDurationMs", Unit: metrics.Milliseconds, Value: res.DurationMS},
	)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
