package site

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pgfleet/pgfleet/shared/aws/ssmx"
	"github.com/pgfleet/pgfleet/shared/fleet"
	"github.com/pgfleet/pgfleet/shared/hostscripts"
	"github.com/pgfleet/pgfleet/shared/local/loopfs"
	"github.com/pgfleet/pgfleet/shared/snapset"
)

// Finder lists the site's hosts as cluster members.
type Finder struct{ Site *State }

var _ fleet.Finder = Finder{}

// Members implements fleet.Finder.
func (f Finder) Members(_ context.Context, tags map[string]string, roleTag string) ([]fleet.Member, error) {
	f.Site.mu.Lock()
	defer f.Site.mu.Unlock()
	var out []fleet.Member
	for _, h := range f.Site.Hosts {
		if !hasTags(h.Tags, tags) {
			continue
		}
		m := fleet.Member{
			InstanceID: h.InstanceID,
			Role:       h.Tags[roleTag],
			State:      h.State,
			PrivateIP:  "127.0.0.1",
			Tags:       h.Tags,
			Volumes:    []fleet.AttachedVolume{{VolumeID: "root-" + h.InstanceID, Device: "/dev/xvda", Root: true}},
		}
		for _, v := range h.Volumes {
			m.Volumes = append(m.Volumes, fleet.AttachedVolume{VolumeID: v.VolumeID, Device: v.Device})
		}
		out = append(out, m)
	}
	return out, nil
}

func hasTags(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// Runner runs host scripts with bash on this machine: the same embedded scripts SSM runs.
type Runner struct {
	Site *State
	// Latency, when set, adds SSM Run Command's delays where they sit in AWS (SSMLatency); nil
	// runs each script at once, which leaves only the host side in a measured window.
	Latency *SSMLatency

	mu sync.Mutex
	// Calls counts script runs per script name (tests read it).
	Calls       map[hostscripts.Name]int
	invocations []Invocation
}

var _ fleet.HostRunner = (*Runner)(nil)

// Invocation is one script run as SSM Run Command would carry it.
type Invocation struct {
	InstanceID string
	Script     hostscripts.Name
	// Parameters are the SendCommand parameters the same call sends in AWS.
	Parameters map[string][]string
	// Argv is what bash got after the script's path.
	Argv []string
	// Stdout and Stderr are what the script printed: in AWS, GetCommandInvocation's output
	// (and the CloudWatch Logs group, when one is configured).
	Stdout, Stderr string
	// Sent is when Run was called (SendCommand), Started and Exited bound the script on the host,
	// Returned is when the orchestrator got the result. Without Latency they nearly coincide.
	Sent, Started, Exited, Returned time.Time
}

// Invocations returns every completed run in the order they returned.
func (r *Runner) Invocations() []Invocation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Invocation(nil), r.invocations...)
}

// Run implements fleet.HostRunner.
func (r *Runner) Run(ctx context.Context, instanceID string, script hostscripts.Name, args hostscripts.Args) ([]byte, error) {
	h, ok := r.Site.Host(instanceID)
	if !ok {
		return nil, fmt.Errorf("run %s: no local host %s", script, instanceID)
	}
	if h.State != "running" {
		return nil, fmt.Errorf("run %s: host %s is %s", script, instanceID, h.State)
	}
	src, err := hostscripts.Source(script)
	if err != nil {
		return nil, err
	}
	argv, err := args.Argv(script)
	if err != nil {
		return nil, fmt.Errorf("run %s on %s: %w", script, instanceID, err)
	}
	params, err := args.SSMParameters(script)
	if err != nil {
		return nil, fmt.Errorf("run %s on %s: %w", script, instanceID, err)
	}
	r.mu.Lock()
	if r.Calls == nil {
		r.Calls = map[hostscripts.Name]int{}
	}
	r.Calls[script]++
	r.mu.Unlock()
	path, err := r.scriptFile(script, src)
	if err != nil {
		return nil, err
	}
	inv := Invocation{InstanceID: instanceID, Script: script, Parameters: params, Argv: argv, Sent: time.Now()}
	if r.Latency != nil {
		// In AWS a command the caller gave up on before delivery never runs.
		if err := sleepUntil(ctx, inv.Sent.Add(r.Latency.Delivery)); err != nil {
			return nil, fmt.Errorf("%s on %s: gave up before delivery: %w", script, instanceID, err)
		}
	}
	cmd := exec.CommandContext(ctx, "bash", append([]string{path}, argv...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 2 * time.Second
	inv.Started = time.Now()
	runErr := cmd.Run()
	inv.Exited = time.Now()
	inv.Stdout, inv.Stderr = stdout.String(), stderr.String()
	if r.Latency != nil {
		// The script has run whatever happens now; the caller may only stop waiting for it.
		seen := r.Latency.ResultSeen(inv.Sent, inv.Exited)
		if err := sleepUntil(ctx, seen); err != nil {
			r.record(inv)
			return nil, fmt.Errorf("%s on %s: gave up waiting for the result: %w", script, instanceID, err)
		}
	}
	inv.Returned = time.Now()
	r.record(inv)
	line, lerr := hostscripts.LastJSONLine(stdout.Bytes())
	if runErr != nil {
		return line, fmt.Errorf("%s on %s: %w: %s", script, instanceID, runErr, tail(stderr.String(), 400))
	}
	if lerr != nil {
		return nil, fmt.Errorf("%s on %s: %w", script, instanceID, lerr)
	}
	return line, nil
}

func (r *Runner) record(inv Invocation) {
	r.mu.Lock()
	r.invocations = append(r.invocations, inv)
	r.mu.Unlock()
}

// SSMLatency is what SSM Run Command adds around a host script in AWS, applied where it happens
// there, so that a window measured on the host clock (a backup's writes blocked: freeze started
// -> thaw returned) holds what it holds in AWS: the freeze's completion report reaching SSM, the
// GetCommandInvocation polls that find it, then the thaw's delivery to the agent and its start.
type SSMLatency struct {
	// Delivery is SendCommand -> the script starts on the host: the agent receives the command
	// on its control channel, starts a document worker and writes the script to disk.
	Delivery time.Duration
	// Completion is the script exits -> its result is visible to GetCommandInvocation: the
	// agent's reply reaches SSM and the invocation is updated.
	Completion time.Duration
	// Poll is the orchestrator's GetCommandInvocation schedule, counted from SendCommand: the
	// result is seen at the first poll at or after it became visible.
	Poll ssmx.Poll
}

// DefaultSSMLatency models an online instance with a healthy agent. The figures are estimates,
// not measurements:
//   - Poll is ssmx.DefaultPoll, the schedule the backup function uses (first poll 100 ms after
//     SendCommand, then x1.5, at most 1 s apart).
//   - Delivery 1 s and Completion 1 s. The public figure we found is about 5 s from SendCommand
//     to a result for a one-line command on an online instance (DataDog/stratus-red-team issue
//     108, 2022), read with the SDK's CommandExecuted waiter, which polls at once and then after
//     5 s: an upper bound, quantized by that waiter. 1 s each way, plus this poll schedule,
//     sits inside it with the agent's worker start and SSM's status update each taking about a
//     second.
//
// Measure a deployment's own figures from ssmx's "host command finished" log line (ms, from
// SendCommand to result) minus the script's own run time (finished_us - started_us in its
// result), and set Delivery and Completion from them.
var DefaultSSMLatency = SSMLatency{Delivery: time.Second, Completion: time.Second, Poll: ssmx.DefaultPoll}

// ResultSeen is when an orchestrator that sent a command at sent, polling on l.Poll, sees the
// result of a script that exited at exited.
func (l SSMLatency) ResultSeen(sent, exited time.Time) time.Time {
	visible := exited.Add(l.Completion)
	p := l.Poll
	if p.Initial <= 0 {
		return visible
	}
	// The same pacing as ssmx.Runner.wait.
	at, delay := sent, p.Initial
	for range 10000 {
		at = at.Add(delay)
		if !at.Before(visible) {
			return at
		}
		delay = min(time.Duration(float64(delay)*p.Factor), p.Max)
		if delay <= 0 {
			delay = p.Initial
		}
	}
	return visible
}

// sleepUntil waits until t or the end of ctx.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-timer.C:
		return nil
	}
}

// scriptFile writes the embedded script to the site's run directory once: bash reads a script
// from a pipe one byte at a time, which would put milliseconds into the frozen window.
func (r *Runner) scriptFile(name hostscripts.Name, src string) (string, error) {
	p := filepath.Join(r.Site.Root, "run", "scripts", string(name)+".sh")
	if cur, err := os.ReadFile(p); err == nil && string(cur) == src {
		return p, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", fmt.Errorf("write host script %s: %w", name, err)
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(src), 0o644); err != nil {
		return "", fmt.Errorf("write host script %s: %w", name, err)
	}
	return p, os.Rename(tmp, p)
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// Snapshots stores snapshots as sparse block copies of the images under <root>/snapshots/<id>/.
type Snapshots struct {
	Site *State
	// FailCreate, when set, makes CreateSet fail (fault injection for tests and the demo).
	FailCreate func() error
}

var _ fleet.SnapshotStore = (*Snapshots)(nil)

type snapshotRecord struct {
	ID        string            `json:"id"`
	VolumeID  string            `json:"volumeId"`
	SizeGiB   int64             `json:"sizeGiB"`
	State     string            `json:"state"`
	StartTime time.Time         `json:"startTime"`
	Tags      map[string]string `json:"tags"`
}

// ImagePath is the block image of a local snapshot.
func (s *Snapshots) ImagePath(snapshotID string) string {
	return filepath.Join(s.Site.SnapshotDir(), snapshotID, "volume.img")
}

func (s *Snapshots) recordPath(id string) string {
	return filepath.Join(s.Site.SnapshotDir(), id, "snapshot.json")
}

// PendingSnapshots implements fleet.SnapshotStore: local copies finish inside CreateSet, so a
// pending snapshot is only one whose record says so (tests write such records).
func (s *Snapshots) PendingSnapshots(ctx context.Context, volumeIDs []string) (map[string]int, error) {
	recs, err := s.records()
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, v := range volumeIDs {
		want[v] = true
	}
	out := map[string]int{}
	for _, r := range recs {
		if want[r.VolumeID] && r.State == string(snapset.StatePending) {
			out[r.VolumeID]++
		}
	}
	return out, nil
}

// CreateSet implements fleet.SnapshotStore: every non-excluded data volume of the host is copied
// in parallel; the copies are taken while the host is frozen, which is what makes them one
// point in time.
func (s *Snapshots) CreateSet(ctx context.Context, req fleet.CreateSetRequest) ([]snapset.Snapshot, error) {
	if s.FailCreate != nil {
		if err := s.FailCreate(); err != nil {
			return nil, err
		}
	}
	h, ok := s.Site.Host(req.InstanceID)
	if !ok {
		return nil, fmt.Errorf("create snapshots: no local host %s", req.InstanceID)
	}
	excluded := map[string]bool{}
	for _, v := range req.ExcludeVolumeIDs {
		excluded[v] = true
	}
	now := time.Now().UTC()
	var vols []Volume
	for _, v := range h.Volumes {
		if !excluded[v.VolumeID] {
			vols = append(vols, v)
		}
	}
	if len(vols) == 0 {
		return nil, fmt.Errorf("create snapshots: host %s has no data volumes to snapshot", req.InstanceID)
	}
	out := make([]snapset.Snapshot, len(vols))
	errs := make([]error, len(vols))
	var wg sync.WaitGroup
	for i, v := range vols {
		id := "snap-" + randomHex(8)
		out[i] = snapset.Snapshot{
			ID: id, VolumeID: v.VolumeID, SizeGiB: int64((v.SizeMiB + 1023) / 1024),
			State: snapset.StateCompleted, StartTime: now, Tags: copyTags(req.Tags),
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			dir := filepath.Join(s.Site.SnapshotDir(), id)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				errs[i] = err
				return
			}
			if err := loopfs.SparseCopy(ctx, v.VolumeID, s.ImagePath(id)); err != nil {
				errs[i] = fmt.Errorf("copy %s: %w", v.VolumeID, err)
				return
			}
			errs[i] = s.writeRecord(out[i])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		// Like a failed API call that may have created some snapshots: what exists keeps its
		// tags (pending status), so the caller can find and mark it.
		return nil, fmt.Errorf("create snapshots of %s: %w", req.InstanceID, err)
	}
	return out, nil
}

func (s *Snapshots) writeRecord(sn snapset.Snapshot) error {
	rec := snapshotRecord{ID: sn.ID, VolumeID: sn.VolumeID, SizeGiB: sn.SizeGiB, State: string(sn.State), StartTime: sn.StartTime, Tags: sn.Tags}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.recordPath(sn.ID) + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write snapshot record: %w", err)
	}
	return os.Rename(tmp, s.recordPath(sn.ID))
}

// WritePendingRecord stores a snapshot record without an image (tests: a snapshot still pending).
func (s *Snapshots) WritePendingRecord(volumeID string, tags map[string]string) (string, error) {
	id := "snap-" + randomHex(8)
	if err := os.MkdirAll(filepath.Join(s.Site.SnapshotDir(), id), 0o700); err != nil {
		return "", err
	}
	return id, s.writeRecord(snapset.Snapshot{ID: id, VolumeID: volumeID, State: snapset.StatePending, StartTime: time.Now().UTC(), Tags: tags})
}

func (s *Snapshots) records() ([]snapshotRecord, error) {
	entries, err := os.ReadDir(s.Site.SnapshotDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list local snapshots: %w", err)
	}
	var out []snapshotRecord
	for _, e := range entries {
		data, err := os.ReadFile(s.recordPath(e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // a copy in progress or a half-deleted snapshot
		}
		if err != nil {
			return nil, err
		}
		var r snapshotRecord
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("read %s: %w", s.recordPath(e.Name()), err)
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// TagSnapshots implements fleet.SnapshotStore.
func (s *Snapshots) TagSnapshots(_ context.Context, tags map[string]map[string]string) error {
	s.Site.mu.Lock()
	defer s.Site.mu.Unlock()
	for id, t := range tags {
		data, err := os.ReadFile(s.recordPath(id))
		if err != nil {
			return fmt.Errorf("tag snapshot %s: %w", id, err)
		}
		var r snapshotRecord
		if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Errorf("tag snapshot %s: %w", id, err)
		}
		if r.Tags == nil {
			r.Tags = map[string]string{}
		}
		for k, v := range t {
			r.Tags[k] = v
		}
		if err := s.writeRecord(snapset.Snapshot{ID: r.ID, VolumeID: r.VolumeID, SizeGiB: r.SizeGiB, State: snapset.SnapshotState(r.State), StartTime: r.StartTime, Tags: r.Tags}); err != nil {
			return err
		}
	}
	return nil
}

// ListSnapshots implements fleet.SnapshotStore.
func (s *Snapshots) ListSnapshots(_ context.Context, cluster string) ([]snapset.Snapshot, error) {
	recs, err := s.records()
	if err != nil {
		return nil, err
	}
	var out []snapset.Snapshot
	for _, r := range recs {
		if r.Tags[snapset.TagCluster] != cluster {
			continue
		}
		out = append(out, snapset.Snapshot{ID: r.ID, VolumeID: r.VolumeID, SizeGiB: r.SizeGiB, State: snapset.SnapshotState(r.State), StartTime: r.StartTime, Tags: r.Tags})
	}
	return out, nil
}

// DeleteSnapshot implements fleet.SnapshotStore; a missing snapshot is already deleted.
func (s *Snapshots) DeleteSnapshot(_ context.Context, snapshotID string) error {
	if !strings.HasPrefix(snapshotID, "snap-") || strings.ContainsAny(snapshotID, "/.") {
		return fmt.Errorf("delete snapshot: %q is not a snapshot id", snapshotID)
	}
	// The record goes first, so a half-deleted snapshot is never listed.
	if err := os.Remove(s.recordPath(snapshotID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete snapshot %s: %w", snapshotID, err)
	}
	return os.RemoveAll(filepath.Join(s.Site.SnapshotDir(), snapshotID))
}

func copyTags(t map[string]string) map[string]string {
	out := make(map[string]string, len(t))
	for k, v := range t {
		out[k] = v
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
