// Package backup orchestrates one scheduled backup of a cluster: lease -> pick the member ->
// freeze -> one crash-consistent multi-volume snapshot set -> thaw on every path -> mark the set
// -> retention -> result and metrics. It depends only on the ports of package fleet, so the same
// code runs against AWS and against the local site.
package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pgfleet/pgfleet/shared/config"
	"github.com/pgfleet/pgfleet/shared/fleet"
	"github.com/pgfleet/pgfleet/shared/hostscripts"
	"github.com/pgfleet/pgfleet/shared/logctx"
	"github.com/pgfleet/pgfleet/shared/metrics"
	"github.com/pgfleet/pgfleet/shared/retry"
	"github.com/pgfleet/pgfleet/shared/snapset"
)

// Request names the cluster to back up.
type Request struct {
	Cluster string `json:"cluster"`
}

// Timeouts bound each step. Tests shrink them.
type Timeouts struct {
	Lease    time.Duration // lease expiry: longer than any run
	Freeze   time.Duration // the freeze command, end to end
	Snapshot time.Duration // the CreateSnapshots call
	// Thaw bounds one thaw attempt. On the host a thaw may first wait up to
	// hostscripts.ThawLockWait for a freeze still running, then probe for up to 5 s.
	Thaw time.Duration
}

// DefaultTimeouts suit a Lambda with a 5 minute timeout: their Budget with DefaultThawRetry is
// 3m32s, so a run that starts has time for every thaw attempt.
var DefaultTimeouts = Timeouts{
	Lease:    15 * time.Minute,
	Freeze:   60 * time.Second,
	Snapshot: 30 * time.Second,
	Thaw:     30 * time.Second,
}

// Budget is the time a run needs from the freeze on, in the worst case the timeouts allow: the
// freeze command, the snapshot call and every thaw attempt taking their whole timeouts, plus the
// waits between thaw attempts. A run starts a freeze only when its deadline leaves this much,
// so whatever happens it can still send all its thaws before it is stopped.
func (t Timeouts) Budget(thaw retry.Backoff) time.Duration {
	return t.Freeze + t.Snapshot + time.Duration(thaw.Attempts)*t.Thaw + thaw.MaxPauses()
}

// DefaultThawRetry retries a failed thaw quickly: the watchdog is only the last resort.
var DefaultThawRetry = retry.Backoff{Attempts: 4, Initial: 200 * time.Millisecond, Max: 2 * time.Second}

// DefaultMarkRetry retries tagging a set with its status (a throttled CreateTags).
var DefaultMarkRetry = retry.Backoff{Attempts: 3, Initial: 200 * time.Millisecond, Max: 400 * time.Millisecond}

// Backup runs backups. Every field but Log, Now, Owner, Timeouts, ThawRetry and MarkRetry is
// required.
type Backup struct {
	Configs   config.Source
	Members   fleet.Finder
	Hosts     fleet.HostRunner
	Snapshots fleet.SnapshotStore
	Lease     fleet.Lease
	Metrics   metrics.Sink
	Log       *slog.Logger
	Now       func() time.Time
	// Owner identifies this run in the lease; unique to the run (Handle makes it).
	Owner string
	// RequestID is the Lambda request id, on every log line of the run.
	RequestID string
	Timeouts  Timeouts
	ThawRetry retry.Backoff
	// MarkRetry retries tagging a set with its status.
	MarkRetry retry.Backoff
}

// Result is what a run returns (and what the Lambda answers).
type Result struct {
	Cluster          string             `json:"cluster"`
	Status           Status             `json:"status"`
	Reason           string             `json:"reason,omitempty"`
	SetID            string             `json:"setId,omitempty"`
	InstanceID       string             `json:"instanceId,omitempty"`
	Role             string             `json:"role,omitempty"`
	SnapshotIDs      []string           `json:"snapshotIds,omitempty"`
	Volumes          int                `json:"volumes,omitempty"`
	SizeGiB          int64              `json:"sizeGiB,omitempty"`
	Frozen           bool               `json:"frozen"`
	WritesBlockedMS  float64            `json:"writesBlockedMs"`
	RedoWALFile      string             `json:"redoWalFile,omitempty"`
	SnapshotLSN      string             `json:"snapshotLsn,omitempty"`
	StepsMS          map[string]float64 `json:"stepsMs"`
	Retention        []RetentionEntry   `json:"retention,omitempty"`
	DeletedSets      []string           `json:"deletedSets,omitempty"`
	AbandonedMarked  []string           `json:"abandonedSetsMarkedFailed,omitempty"`
	Warnings         []string           `json:"warnings,omitempty"`
	ThawVerified     bool               `json:"thawVerified"`
	StandbySignalSet bool               `json:"standbySignalWritten"`
	// WatchdogFired: the host's watchdog thawed it before this run's thaw did, so the set is not
	// freeze-consistent (it is marked failed).
	WatchdogFired bool `json:"watchdogFired"`
	// RetentionStatus is "ok" or "failed" once retention ran (a failure does not undo the
	// backup; the RetentionFailed metric is for an alarm).
	RetentionStatus string `json:"retentionStatus,omitempty"`
}

// Status is how a run ended.
type Status string

// Run statuses.
const (
	StatusCompleted Status = "completed" // the set is taken and marked completed
	StatusFailed    Status = "failed"    // see Reason; the run returned an error
	StatusSkipped   Status = "skipped"   // nothing to do now (see Reason); no error
)

// RetentionEntry is one retention decision in the result.
type RetentionEntry struct {
	SetID   string   `json:"setId"`
	Keep    bool     `json:"keep"`
	Reasons []string `json:"reasons"`
}

// Errors a caller can test for.
var (
	ErrBadConfig = errors.New("invalid configuration")
	ErrNoMember  = errors.New("no usable member")
	// ErrNotFreezeConsistent: the watchdog thawed the host before the run's thaw did, so the
	// set may have been taken with writes running (and, on a primary, without standby.signal).
	ErrNotFreezeConsistent = errors.New("set is not freeze-consistent")
)

func (b *Backup) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

func (b *Backup) log() *slog.Logger {
	if b.Log != nil {
		return b.Log
	}
	return slog.Default()
}

// runLog is the logger of a run on cluster: the cluster and the request id on every line.
func (b *Backup) runLog(cluster string) *slog.Logger {
	return b.log().With("cluster", cluster, "request_id", b.RequestID)
}

// step returns ctx whose logger (for the adapters) names the step.
func step(ctx context.Context, name string) context.Context {
	ctx, _ = logctx.Step(ctx, name)
	return ctx
}

func (b *Backup) timeouts() Timeouts {
	t := b.Timeouts
	d := DefaultTimeouts
	if t.Lease == 0 {
		t.Lease = d.Lease
	}
	if t.Freeze == 0 {
		t.Freeze = d.Freeze
	}
	if t.Snapshot == 0 {
		t.Snapshot = d.Snapshot
	}
	if t.Thaw == 0 {
		t.Thaw = d.Thaw
	}
	return t
}

func (b *Backup) thawRetry() retry.Backoff {
	if b.ThawRetry.Attempts == 0 {
		return DefaultThawRetry
	}
	return b.ThawRetry
}

// Run performs one backup of req.Cluster. A skipped run (a volume with too many pending
// snapshots) returns StatusSkipped and no error.
func (b *Backup) Run(ctx context.Context, req Request) (res Result, err error) {
	res = Result{Cluster: req.Cluster, StepsMS: map[string]float64{}}
	start := b.now()
	if !config.ValidName(req.Cluster) {
		return b.fail(res, fmt.Errorf("%w: cluster %q is not a valid cluster name", fleet.ErrBadRequest, req.Cluster))
	}
	cfg, err := b.Configs.Load(ctx, req.Cluster)
	if err != nil {
		return b.fail(res, fmt.Errorf("load configuration: %w", err))
	}
	// Arguments the host scripts would refuse send nothing to any host, not even a thaw.
	_, ferr := freezeParams(cfg).Args().Argv(hostscripts.Freeze)
	_, terr := thawParams(cfg).Args().Argv(hostscripts.Thaw)
	if err := errors.Join(ferr, terr); err != nil {
		return b.fail(res, fmt.Errorf("%w: cluster %s: %w (nothing was sent to a host)", ErrBadConfig, cfg.Name, err))
	}
	// Every line of the run, the adapters' included, names the cluster and the request; the
	// adapters get the step from the context each call is made with.
	log := b.runLog(cfg.Name)
	ctx = logctx.With(ctx, log)

	leaseKey := "backup/" + cfg.Name
	owner := b.Owner
	if owner == "" {
		owner = fleet.NewLeaseOwner("")
	}
	t0 := b.now()
	release, err := fleet.TakeLease(step(ctx, "lease"), b.Lease, leaseKey, owner, b.timeouts().Lease)
	if err != nil {
		return b.fail(res, err)
	}
	res.StepsMS["lease"] = ms(b.now().Sub(t0))
	defer func() {
		if rerr := release(); rerr != nil {
			log.Warn("release lease", "step", "lease", "error", rerr.Error())
			res.Warnings = append(res.Warnings, "lease not released: "+rerr.Error())
		}
	}()

	res, err = b.runLocked(ctx, log, cfg, res)
	res.StepsMS["total"] = ms(b.now().Sub(start))
	b.emit(cfg.Name, res)
	if err != nil {
		return b.fail(res, err)
	}
	log.Info("backup finished", "step", "done", "status", res.Status, "set_id", res.SetID,
		"writes_blocked_ms", res.WritesBlockedMS, "reason", res.Reason)
	return res, nil
}

func (b *Backup) fail(res Result, err error) (Result, error) {
	res.Status = StatusFailed
	res.Reason = err.Error()
	b.runLog(res.Cluster).Error("backup failed", "step", "done", "set_id", res.SetID, "error", err.Error())
	return res, err
}

func (b *Backup) runLocked(ctx context.Context, log *slog.Logger, cfg config.Cluster, res Result) (Result, error) {
	to := b.timeouts()

	// Pick the member (before anything is frozen).
	t := b.now()
	pctx := step(ctx, "preflight")
	member, err := b.pickMember(pctx, cfg)
	if err != nil {
		return res, err
	}
	res.InstanceID, res.Role = member.InstanceID, member.Role
	log = log.With("instance", member.InstanceID)
	data := member.DataVolumes()
	if len(data) == 0 {
		return res, fmt.Errorf("%w: instance %s has no data volumes (only its root volume); put PostgreSQL data on separate EBS volumes", ErrNoMember, member.InstanceID)
	}
	volumeIDs := make([]string, 0, len(data))
	for _, v := range data {
		volumeIDs = append(volumeIDs, v.VolumeID)
	}
	pending, err := b.Snapshots.PendingSnapshots(pctx, volumeIDs)
	if err != nil {
		return res, fmt.Errorf("count pending snapshots of %s: %w", member.InstanceID, err)
	}
	for _, id := range volumeIDs {
		if pending[id] >= 2 {
			res.Status = StatusSkipped
			res.Reason = fmt.Sprintf("volume %s of %s already has %d pending snapshots; skipped so snapshots do not pile up (the previous ones are still being copied)", id, member.InstanceID, pending[id])
			log.Warn("backup skipped", "step", "preflight", "reason", res.Reason)
			return res, nil
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		thaws := b.thawRetry()
		if need := to.Budget(thaws); time.Until(dl) < need {
			return res, fmt.Errorf("only %s left before the deadline, need %s (freeze %s + snapshot %s + %d thaw attempts of %s and their backoff) to freeze, snapshot and thaw safely; nothing was frozen",
				time.Until(dl).Round(time.Millisecond), need, to.Freeze, to.Snapshot, thaws.Attempts, to.Thaw)
		}
	}
	// Earlier runs that died before marking their set leave it pending: under the lease nobody
	// else can be working on it, so it is marked failed now rather than left unmarked.
	existing, err := b.listSets(pctx, cfg.Name)
	if err != nil {
		return res, err
	}
	for _, s := range existing {
		if s.Status == snapset.StatusPending {
			if err := b.markSet(pctx, s, snapset.StatusFailed, "abandoned: the run that created it ended before marking it", nil); err != nil {
				return res, fmt.Errorf("mark abandoned set %s failed: %w", s.SetID, err)
			}
			res.AbandonedMarked = append(res.AbandonedMarked, s.SetID)
		}
	}
	res.StepsMS["preflight"] = ms(b.now().Sub(t))

	// Freeze. From here on, every path thaws.
	t = b.now()
	fctx, cancel := context.WithTimeout(step(ctx, "freeze"), to.Freeze)
	fr, ferr := hostscripts.RunFreeze(fctx, b.Hosts, member.InstanceID, freezeParams(cfg))
	cancel()
	res.StepsMS["freeze"] = ms(b.now().Sub(t))
	// A freeze the script refused is not followed by a thaw: it undid its own work, and a thaw
	// would release a freeze that is not this run's (an operator's, or an earlier one its
	// watchdog guards). Any other failure (lost, timed out, unreadable, a mount still frozen)
	// leaves the outcome unknown, and the run thaws.
	if hostscripts.OutcomeOf(ferr) == hostscripts.Refused {
		return res, fmt.Errorf("freeze on %s: %w (nothing frozen, nothing snapshotted)", member.InstanceID, ferr)
	}
	if ferr != nil {
		// A lost, unreadable or timed-out command may have frozen: thaw (thaw is idempotent).
		_, terr := b.thaw(step(ctx, "thaw"), log, member.InstanceID, cfg)
		if terr != nil {
			return res, fmt.Errorf("freeze failed: %w; and thaw failed too (the watchdog thaws within %ds): %v", ferr, cfg.WatchdogSeconds, terr)
		}
		return res, fmt.Errorf("freeze on %s: %w (nothing snapshotted, host thawed)", member.InstanceID, ferr)
	}
	res.Frozen = fr.Frozen
	res.StandbySignalSet = fr.StandbySignalWritten
	res.RedoWALFile, res.SnapshotLSN = fr.RedoWALFile, fr.SnapshotLSN

	// Snapshot while frozen: one CreateSnapshots call, nothing else in the window.
	createdAt := b.now()
	meta := snapset.Meta{
		Cluster:        cfg.Name,
		SetID:          snapset.NewSetID(cfg.Name, createdAt),
		Status:         snapset.StatusPending,
		SourceInstance: member.InstanceID,
		SourceRole:     roleOf(fr, member),
		PGVersion:      fr.PGVersion,
		Timeline:       fr.Timeline,
		RedoLSN:        fr.RedoLSN,
		RedoWALFile:    fr.RedoWALFile,
		SnapshotLSN:    fr.SnapshotLSN,
		Consistency:    consistencyOf(cfg, fr),
		CreatedAt:      createdAt,
	}
	exclude, mountOf, warn := planVolumes(data, fr)
	if warn != "" {
		res.Warnings = append(res.Warnings, warn)
		log.Warn(warn, "step", "snapshot")
	}
	meta.VolumeCount = len(data) - len(exclude)
	res.SetID = meta.SetID
	t = b.now()
	sctx, cancel := context.WithTimeout(step(ctx, "snapshot"), to.Snapshot)
	snaps, serr := b.Snapshots.CreateSet(sctx, fleet.CreateSetRequest{
		InstanceID:       member.InstanceID,
		ExcludeVolumeIDs: exclude,
		Description:      fmt.Sprintf("pgfleet %s set %s of %s", cfg.Name, meta.SetID, member.InstanceID),
		Tags:             meta.Tags(),
	})
	cancel()
	res.StepsMS["snapshot"] = ms(b.now().Sub(t))

	// Thaw on every path, with a context the caller's cancellation cannot kill.
	t = b.now()
	th, terr := b.thaw(step(ctx, "thaw"), log, member.InstanceID, cfg)
	tr := th.result
	res.StepsMS["thaw"] = ms(b.now().Sub(t))
	if terr == nil {
		res.ThawVerified = tr.ProbeOK
		if fr.Frozen {
			res.WritesBlockedMS = float64(fr.WritesBlockedMicros(tr)) / 1000
		}
	}
	// Was the host thawed by its watchdog before this run's thaw? Then writes may have run
	// when the snapshot was taken.
	if fr.Frozen && th.thawedBeforeUs(fr) {
		res.WatchdogFired, res.WritesBlockedMS = true, 0
		nc := fmt.Errorf("%w: the host's watchdog thawed it (after %ds) before this run's thaw; the snapshot may have been taken with writes running and without standby.signal",
			ErrNotFreezeConsistent, cfg.WatchdogSeconds)
		log.Error("watchdog fired before the thaw", "step", "thaw", "set_id", meta.SetID, "reason", nc.Error())
		if serr == nil {
			serr = nc
		}
	}

	// Mark the set.
	t = b.now()
	if serr != nil {
		reason := "snapshot failed: " + serr.Error()
		if errors.Is(serr, ErrNotFreezeConsistent) {
			reason = serr.Error()
		}
		if err := b.markByID(step(ctx, "mark"), cfg.Name, meta.SetID, snaps, reason); err != nil {
			res.Warnings = append(res.Warnings, "could not mark the failed set (the next run marks it): "+err.Error())
		}
		if terr != nil {
			return res, fmt.Errorf("create snapshot set: %w; thaw failed too (the watchdog thaws within %ds): %v", serr, cfg.WatchdogSeconds, terr)
		}
		if errors.Is(serr, ErrNotFreezeConsistent) {
			return res, fmt.Errorf("set %s marked failed: %w", meta.SetID, serr)
		}
		return res, fmt.Errorf("create snapshot set: %w (host thawed, set marked failed)", serr)
	}
	for i := range snaps {
		if m, ok := mountOf[snaps[i].VolumeID]; ok {
			snaps[i].MountPoint, snaps[i].Filesystem = m.Path, m.FSType
		}
		for _, v := range data {
			if v.VolumeID == snaps[i].VolumeID {
				snaps[i].Device = v.Device
			}
		}
		res.SnapshotIDs = append(res.SnapshotIDs, snaps[i].ID)
		res.SizeGiB += snaps[i].SizeGiB
	}
	res.Volumes = len(snaps)
	status, reason := snapset.StatusCompleted, ""
	if len(snaps) != meta.VolumeCount {
		status, reason = snapset.StatusFailed, fmt.Sprintf("expected %d snapshots, storage returned %d", meta.VolumeCount, len(snaps))
	}
	extra := map[string]string{}
	if res.WritesBlockedMS > 0 {
		extra[snapset.TagFrozenMS] = strconv.FormatInt(int64(res.WritesBlockedMS+0.5), 10)
	}
	if err := b.markSet(step(ctx, "mark"), snapset.Set{Meta: meta, Snapshots: snaps}, status, reason, extra); err != nil {
		return res, fmt.Errorf("mark set %s %s: %w (the next run marks it failed)", meta.SetID, status, err)
	}
	res.StepsMS["mark"] = ms(b.now().Sub(t))
	if terr != nil {
		return res, fmt.Errorf("set %s taken, but thaw of %s failed after retries (the watchdog thaws within %ds): %w", meta.SetID, member.InstanceID, cfg.WatchdogSeconds, terr)
	}
	if status == snapset.StatusFailed {
		return res, fmt.Errorf("set %s: %s", meta.SetID, reason)
	}
	res.Status = StatusCompleted

	// Retention. A failure here does not undo the backup; it is reported in the result and by
	// the RetentionFailed metric, which an alarm watches.
	t = b.now()
	res.RetentionStatus = "ok"
	if err := b.retention(step(ctx, "retention"), log, cfg, &res); err != nil {
		res.RetentionStatus = "failed"
		res.Warnings = append(res.Warnings, "retention: "+err.Error())
		log.Error("retention failed", "step", "retention", "error", err.Error())
	}
	res.StepsMS["retention"] = ms(b.now().Sub(t))
	return res, nil
}

// freezeParams and thawParams are the host scripts' flags for a cluster.
func freezeParams(cfg config.Cluster) hostscripts.FreezeParams {
	return hostscripts.FreezeParams{
		PGData:          cfg.Postgres.PGData,
		Port:            cfg.Postgres.Port,
		BinDir:          cfg.Postgres.BinDir,
		OSUser:          cfg.Postgres.OSUser,
		SocketDir:       cfg.Postgres.SocketDir,
		Mounts:          cfg.Volumes.Mounts,
		Filesystem:      cfg.Volumes.Filesystem,
		Consistency:     cfg.Consistency,
		WatchdogSeconds: cfg.WatchdogSeconds,
		StateDir:        cfg.StateDir,
		ProtectPaths:    cfg.ProtectPaths,
	}
}

func thawParams(cfg config.Cluster) hostscripts.ThawParams {
	return hostscripts.ThawParams{Mounts: cfg.Volumes.Mounts, PGData: cfg.Postgres.PGData, StateDir: cfg.StateDir}
}

// thawOutcome is what the thaw step learned.
type thawOutcome struct {
	result hostscripts.ThawResult
	// first is the result of the first attempt, when it ran the script and answered.
	first    hostscripts.ThawResult
	hasFirst bool
	// fired is the last attempt's result that reported a fired watchdog.
	fired hostscripts.ThawResult
}

// thawedBeforeUs reports whether something other than this run thawed the host the freeze fr
// froze: a thaw reported that fr's watchdog fired, or the first thaw to reach the host found
// every mount fr froze already thawed.
func (o thawOutcome) thawedBeforeUs(fr hostscripts.FreezeResult) bool {
	if o.fired.WatchdogFired(fr) {
		return true
	}
	if !o.hasFirst || !o.first.OK || len(fr.StillFrozen) == 0 {
		return false
	}
	for _, m := range fr.StillFrozen {
		if slices.Contains(o.first.Thawed, m) || slices.Contains(o.first.StillFrozen, m) {
			return false
		}
	}
	return true
}

// thaw runs the thaw script with retries, detached from the caller's cancellation. An attempt
// counts only when the script reports ok and its write probe finished: a probe that did not is
// retried, then fails the run.
func (b *Backup) thaw(ctx context.Context, log *slog.Logger, instanceID string, cfg config.Cluster) (thawOutcome, error) {
	thaws := b.thawRetry()
	// Detached from the caller's cancellation: the pauses and attempts always run.
	base := context.WithoutCancel(ctx)
	var out thawOutcome
	_, err := retry.Do(base, thaws, nil, func(attempt int) error {
		tctx, cancel := context.WithTimeout(base, b.timeouts().Thaw)
		tr, err := hostscripts.RunThaw(tctx, b.Hosts, instanceID, thawParams(cfg))
		cancel()
		// The script's line was read (tr carries its action) on the first attempt: what it
		// found tells whether something else thawed the host first.
		if attempt == 1 && tr.Action == string(hostscripts.Thaw) {
			out.first, out.hasFirst = tr, true
		}
		if tr.WatchdogFiredToken != "" {
			out.fired = tr
		}
		if err == nil {
			out.result = tr
			return nil
		}
		log.Warn("thaw attempt failed", "step", "thaw", "attempt", attempt, "error", err.Error())
		return err
	})
	if err != nil {
		return out, fmt.Errorf("thaw %s: %d attempts: %w", instanceID, thaws.Attempts, err)
	}
	return out, nil
}

func (b *Backup) pickMember(ctx context.Context, cfg config.Cluster) (fleet.Member, error) {
	members, err := b.Members.Members(ctx, cfg.Members.Tags, cfg.Members.RoleTag)
	if err != nil {
		return fleet.Member{}, fmt.Errorf("find members of %s: %w", cfg.Name, err)
	}
	var running []fleet.Member
	for _, m := range members {
		if m.State == "running" {
			running = append(running, m)
		}
	}
	if len(running) == 0 {
		return fleet.Member{}, fmt.Errorf("%w: no running instance carries tags %v (found %d in other states)", ErrNoMember, cfg.Members.Tags, len(members))
	}
	rank := func(m fleet.Member) int {
		switch m.Role {
		case cfg.SnapshotSource:
			return 0
		case fleet.RolePrimary, fleet.RoleReplica:
			return 1
		}
		return 2
	}
	sort.SliceStable(running, func(i, j int) bool {
		if rank(running[i]) != rank(running[j]) {
			return rank(running[i]) < rank(running[j])
		}
		return running[i].InstanceID < running[j].InstanceID
	})
	if rank(running[0]) == 2 {
		return fleet.Member{}, fmt.Errorf("%w: no running member of %s has a %s tag of primary or replica", ErrNoMember, cfg.Name, cfg.Members.RoleTag)
	}
	return running[0], nil
}

// planVolumes maps the freeze result's mounts to attached volumes. When every mount names a
// volume attached to the instance, the other data volumes are excluded from the set; otherwise
// every data volume is snapshotted (safe: more, never less).
func planVolumes(data []fleet.AttachedVolume, fr hostscripts.FreezeResult) (exclude []string, mountOf map[string]hostscripts.MountResult, warning string) {
	mountOf = map[string]hostscripts.MountResult{}
	attached := map[string]bool{}
	for _, v := range data {
		attached[v.VolumeID] = true
	}
	complete := len(fr.Mounts) > 0
	for _, m := range fr.Mounts {
		if m.VolumeID == "" || !attached[m.VolumeID] {
			complete = false
			continue
		}
		mountOf[m.VolumeID] = m
	}
	if !complete {
		return nil, mountOf, "could not map every data mount to an attached volume; snapshotting all data volumes"
	}
	for _, v := range data {
		if _, ok := mountOf[v.VolumeID]; !ok {
			exclude = append(exclude, v.VolumeID)
		}
	}
	return exclude, mountOf, ""
}

func roleOf(fr hostscripts.FreezeResult, m fleet.Member) string {
	if fr.InRecovery {
		return fleet.RoleReplica
	}
	if fr.PGVersion != "" {
		return fleet.RolePrimary
	}
	return m.Role
}

func consistencyOf(cfg config.Cluster, fr hostscripts.FreezeResult) string {
	switch {
	case fr.ZFS:
		return "crash-zfs"
	case fr.Frozen:
		return "freeze"
	default:
		return cfg.Consistency
	}
}

func (b *Backup) listSets(ctx context.Context, cluster string) ([]snapset.Set, error) {
	snaps, err := b.Snapshots.ListSnapshots(ctx, cluster)
	if err != nil {
		return nil, fmt.Errorf("list snapshot sets of %s: %w", cluster, err)
	}
	sets, unreadable := snapset.Group(snaps)
	for _, s := range unreadable {
		logctx.From(ctx, b.runLog(cluster)).Warn("snapshot with unreadable set tags ignored", "snapshot", s.ID)
	}
	return sets, nil
}

func (b *Backup) markSet(ctx context.Context, s snapset.Set, status snapset.Status, reason string, extra map[string]string) error {
	tags := map[string]map[string]string{}
	for _, sn := range s.Snapshots {
		t := map[string]string{snapset.TagStatus: string(status)}
		if reason != "" {
			t[snapset.TagStatusReason] = truncate(reason, 255)
		}
		for k, v := range sn.VolumeTags() {
			t[k] = v
		}
		for k, v := range extra {
			t[k] = v
		}
		tags[sn.ID] = t
	}
	if len(tags) == 0 {
		return nil
	}
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	marks := b.MarkRetry
	if marks.Attempts == 0 {
		marks = DefaultMarkRetry
	}
	_, err := retry.Do(mctx, marks, nil, func(int) error { return b.Snapshots.TagSnapshots(mctx, tags) })
	return err
}

// markByID marks failed every snapshot of a set, finding them by tag when the create call did not
// return them (a timed-out call may still have created them).
func (b *Backup) markByID(ctx context.Context, cluster, setID string, known []snapset.Snapshot, reason string) error {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	snaps := append([]snapset.Snapshot(nil), known...)
	if listed, err := b.Snapshots.ListSnapshots(lctx, cluster); err == nil {
		seen := map[string]bool{}
		for _, s := range snaps {
			seen[s.ID] = true
		}
		for _, s := range listed {
			if s.Tags[snapset.TagSetID] == setID && !seen[s.ID] {
				snaps = append(snaps, s)
			}
		}
	} else if len(snaps) == 0 {
		return fmt.Errorf("list snapshots to mark set %s: %w", setID, err)
	}
	return b.markSet(ctx, snapset.Set{Snapshots: snaps}, snapset.StatusFailed, reason, nil)
}

func (b *Backup) retention(ctx context.Context, log *slog.Logger, cfg config.Cluster, res *Result) error {
	sets, err := b.listSets(ctx, cfg.Name)
	if err != nil {
		return err
	}
	decisions := cfg.Retention.Apply(sets)
	var errs []error
	for _, d := range decisions {
		res.Retention = append(res.Retention, RetentionEntry{SetID: d.SetID, Keep: d.Keep, Reasons: d.Reasons})
		if d.Keep {
			continue
		}
		if err := b.deleteSet(ctx, d.Set); err != nil {
			errs = append(errs, fmt.Errorf("delete set %s: %w", d.SetID, err))
			continue
		}
		res.DeletedSets = append(res.DeletedSets, d.SetID)
		log.Info("set deleted by retention", "step", "retention", "set_id", d.SetID, "reasons", d.Reasons)
	}
	return errors.Join(errs...)
}

// deleteSet deletes every snapshot of a set. The set is first marked failed so that a run cut
// off halfway leaves a visibly failed remainder, never a "completed" set missing volumes.
func (b *Backup) deleteSet(ctx context.Context, s snapset.Set) error {
	if s.Status == snapset.StatusCompleted {
		if err := b.markSet(ctx, s, snapset.StatusFailed, "being deleted by retention", nil); err != nil {
			return err
		}
	}
	for _, sn := range s.Snapshots {
		if err := b.Snapshots.DeleteSnapshot(ctx, sn.ID); err != nil {
			return fmt.Errorf("snapshot %s: %w", sn.ID, err)
		}
	}
	return nil
}

func (b *Backup) emit(cluster string, res Result) {
	if b.Metrics == nil {
		return
	}
	dims := map[string]string{"Cluster": cluster}
	success := 0.0
	if res.Status == StatusCompleted {
		success = 1
	}
	vals := []metrics.Value{
		{Name: "BackupSuccess", Unit: metrics.Count, Value: success},
		{Name: "SetVolumes", Unit: metrics.Count, Value: float64(res.Volumes)},
		{Name: "SetSizeGiB", Unit: metrics.Gigabytes, Value: float64(res.SizeGiB)},
		{Name: "SetsDeleted", Unit: metrics.Count, Value: float64(len(res.DeletedSets))},
	}
	if res.Frozen {
		// Every run that froze says whether its watchdog had to thaw: an alarm on any 1.
		fired := 0.0
		if res.WatchdogFired {
			fired = 1
		}
		vals = append(vals, metrics.Value{Name: "WatchdogFired", Unit: metrics.Count, Value: fired})
	}
	if res.RetentionStatus != "" {
		failed := 0.0
		if res.RetentionStatus != "ok" {
			failed = 1
		}
		vals = append(vals, metrics.Value{Name: "RetentionFailed", Unit: metrics.Count, Value: failed})
	}
	if res.Frozen && res.WritesBlockedMS > 0 {
		// Only measured windows: a run that never froze must not pull the percentiles down.
		vals = append(vals, metrics.Value{Name: "WritesBlockedMs", Unit: metrics.Milliseconds, Value: res.WritesBlockedMS})
	}
	steps := make([]string, 0, len(res.StepsMS))
	for k := range res.StepsMS {
		steps = append(steps, k)
	}
	sort.Strings(steps)
	for _, k := range steps {
		vals = append(vals, metrics.Value{Name: "Step" + strings.ToUpper(k[:1]) + k[1:] + "Ms", Unit: metrics.Milliseconds, Value: res.StepsMS[k]})
	}
	b.Metrics.Put(dims, vals...)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// truncate shortens s to at most n bytes, "..." included, cut on a rune boundary: the result
// can become a tag value, which must be valid UTF-8 and at most 256 characters.
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= n {
		return s
	}
	n -= len("...")
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
