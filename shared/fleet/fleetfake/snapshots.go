package fleetfake

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/pgfleet/pgfleet/shared/fleet"
	"github.com/pgfleet/pgfleet/shared/snapset"
)

// EC2 tag limits, enforced like EC2 does.
const (
	maxTagsPerResource = 50
	maxTagKeyRunes     = 128
	maxTagValueRunes   = 256
)

// SnapshotStore is a fake fleet.SnapshotStore: snapshots live in memory with their tags and
// states. CreateSet snapshots every data volume of a known instance, as EBS CreateSnapshots does;
// new snapshots start in NewState (pending unless set, as in EBS) until Complete or SetState.
type SnapshotStore struct {
	Faults
	Journal *Journal
	// Now stamps new snapshots (default time.Now).
	Now func() time.Time
	// NewState is the state of new snapshots (default pending).
	NewState snapset.SnapshotState

	mu        sync.Mutex
	instances map[string][]fleet.AttachedVolume
	sizes     map[string]int64
	snaps     map[string]snapset.Snapshot
	seq       int
	creates   []fleet.CreateSetRequest
	tagCalls  []map[string]map[string]string
	deleted   []string
}

// NewSnapshotStore returns an empty store.
func NewSnapshotStore() *SnapshotStore {
	return &SnapshotStore{
		instances: map[string][]fleet.AttachedVolume{},
		sizes:     map[string]int64{},
		snaps:     map[string]snapset.Snapshot{},
	}
}

// AddInstance makes an instance and its attached volumes known to CreateSet.
func (s *SnapshotStore) AddInstance(instanceID string, volumes ...fleet.AttachedVolume) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.instances[instanceID] = slices.Clone(volumes)
}

// SetVolumeSize sets the size CreateSet reports for a volume's snapshots (default 10 GiB).
func (s *SnapshotStore) SetVolumeSize(volumeID string, gib int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sizes[volumeID] = gib
}

// Put stores snapshots as they are (e.g. sets left by earlier runs). A snapshot with the id of
// a stored one replaces it.
func (s *SnapshotStore) Put(snaps ...snapset.Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sn := range snaps {
		s.snaps[sn.ID] = cloneSnapshot(sn)
	}
}

// SetState sets the storage state of snapshots.
func (s *SnapshotStore) SetState(state snapset.SnapshotState, ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if sn, ok := s.snaps[id]; ok {
			sn.State = state
			s.snaps[id] = sn
		}
	}
}

// Complete finishes every pending snapshot, as EBS eventually does.
func (s *SnapshotStore) Complete() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, sn := range s.snaps {
		if sn.State == snapset.StatePending {
			sn.State = snapset.StateCompleted
			s.snaps[id] = sn
		}
	}
}

// Get returns a stored snapshot.
func (s *SnapshotStore) Get(id string) (snapset.Snapshot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, ok := s.snaps[id]
	return cloneSnapshot(sn), ok
}

// All returns every stored snapshot, ordered by id (creation order for the ones CreateSet made).
func (s *SnapshotStore) All() []snapset.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sortedLocked(func(snapset.Snapshot) bool { return true })
}

// BySet returns the stored snapshots tagged with a set id.
func (s *SnapshotStore) BySet(setID string) []snapset.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sortedLocked(func(sn snapset.Snapshot) bool { return sn.Tags[snapset.TagSetID] == setID })
}

// CreateCalls returns the recorded CreateSet requests.
func (s *SnapshotStore) CreateCalls() []fleet.CreateSetRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]fleet.CreateSetRequest, len(s.creates))
	for i, r := range s.creates {
		r.Tags = maps.Clone(r.Tags)
		r.ExcludeVolumeIDs = slices.Clone(r.ExcludeVolumeIDs)
		out[i] = r
	}
	return out
}

// TagCalls returns the recorded TagSnapshots arguments.
func (s *SnapshotStore) TagCalls() []map[string]map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]map[string]map[string]string, len(s.tagCalls))
	for i, c := range s.tagCalls {
		out[i] = cloneTagMap(c)
	}
	return out
}

// Deleted returns the ids DeleteSnapshot removed, in order.
func (s *SnapshotStore) Deleted() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deleted)
}

// PendingSnapshots implements fleet.SnapshotStore.
func (s *SnapshotStore) PendingSnapshots(ctx context.Context, volumeIDs []string) (map[string]int, error) {
	s.Journal.add("%s", OpPendingSnapshots)
	before, after := s.fire(ctx, OpPendingSnapshots)
	if before != nil {
		return nil, before
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, sn := range s.snaps {
		if sn.State == snapset.StatePending && slices.Contains(volumeIDs, sn.VolumeID) {
			out[sn.VolumeID]++
		}
	}
	if after != nil {
		return nil, after
	}
	return out, nil
}

// CreateSet implements fleet.SnapshotStore: one snapshot per attached, non-root, non-excluded
// volume, each with req.Tags, all in NewState. An excluded volume that is not a data volume of
// the instance is an error, as in EC2.
func (s *SnapshotStore) CreateSet(ctx context.Context, req fleet.CreateSetRequest) ([]snapset.Snapshot, error) {
	s.mu.Lock()
	r := req
	r.Tags = maps.Clone(req.Tags)
	r.ExcludeVolumeIDs = slices.Clone(req.ExcludeVolumeIDs)
	s.creates = append(s.creates, r)
	s.mu.Unlock()
	s.Journal.add("%s", OpCreateSet)

	before, after := s.fire(ctx, OpCreateSet)
	if before != nil {
		return nil, before
	}
	if err := checkTags(req.Tags); err != nil {
		return nil, fmt.Errorf("fleetfake: create snapshots of %s: %w", req.InstanceID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	vols, ok := s.instances[req.InstanceID]
	if !ok {
		return nil, fmt.Errorf("fleetfake: create snapshots: InvalidInstanceID.NotFound: %q", req.InstanceID)
	}
	for _, ex := range req.ExcludeVolumeIDs {
		if !slices.ContainsFunc(vols, func(v fleet.AttachedVolume) bool { return v.VolumeID == ex && !v.Root }) {
			return nil, fmt.Errorf("fleetfake: create snapshots: InvalidParameterValue: excluded volume %s is not a data volume of %s", ex, req.InstanceID)
		}
	}
	state := s.NewState
	if state == "" {
		state = snapset.StatePending
	}
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	var out []snapset.Snapshot
	for _, v := range vols {
		if v.Root || slices.Contains(req.ExcludeVolumeIDs, v.VolumeID) {
			continue
		}
		s.seq++
		size := s.sizes[v.VolumeID]
		if size == 0 {
			size = 10
		}
		sn := snapset.Snapshot{
			ID:        fmt.Sprintf("snap-%017d", s.seq),
			VolumeID:  v.VolumeID,
			SizeGiB:   size,
			State:     state,
			StartTime: now,
			Tags:      maps.Clone(req.Tags),
		}
		if sn.Tags == nil {
			sn.Tags = map[string]string{}
		}
		s.snaps[sn.ID] = sn
		out = append(out, cloneSnapshot(sn))
	}
	if after != nil {
		return nil, after
	}
	return out, nil
}

// TagSnapshots implements fleet.SnapshotStore. Like EC2 CreateTags it is all or nothing: an
// unknown snapshot id or a tag over EC2's limits fails the call and tags nothing.
func (s *SnapshotStore) TagSnapshots(ctx context.Context, tags map[string]map[string]string) error {
	s.mu.Lock()
	s.tagCalls = append(s.tagCalls, cloneTagMap(tags))
	s.mu.Unlock()
	s.Journal.add("%s", OpTagSnapshots)

	before, after := s.fire(ctx, OpTagSnapshots)
	if before != nil {
		return before
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range tags {
		sn, ok := s.snaps[id]
		if !ok {
			return fmt.Errorf("fleetfake: create tags: InvalidSnapshot.NotFound: %s", id)
		}
		merged := maps.Clone(sn.Tags)
		if merged == nil {
			merged = map[string]string{}
		}
		maps.Copy(merged, t)
		if err := checkTags(merged); err != nil {
			return fmt.Errorf("fleetfake: create tags on %s: %w", id, err)
		}
	}
	for id, t := range tags {
		sn := s.snaps[id]
		if sn.Tags == nil {
			sn.Tags = map[string]string{}
		}
		maps.Copy(sn.Tags, t)
		s.snaps[id] = sn
	}
	return after
}

// ListSnapshots implements fleet.SnapshotStore: the snapshots tagged with the cluster, ordered by
// id, with the volume fields read from the tags as the EC2 adapter does.
func (s *SnapshotStore) ListSnapshots(ctx context.Context, cluster string) ([]snapset.Snapshot, error) {
	s.Journal.add("%s", OpListSnapshots)
	before, after := s.fire(ctx, OpListSnapshots)
	if before != nil {
		return nil, before
	}
	if cluster == "" {
		return nil, errors.New("fleetfake: list snapshots: no cluster name")
	}
	s.mu.Lock()
	out := s.sortedLocked(func(sn snapset.Snapshot) bool { return sn.Tags[snapset.TagCluster] == cluster })
	s.mu.Unlock()
	for i := range out {
		out[i].Device = out[i].Tags[snapset.TagDevice]
		out[i].MountPoint = out[i].Tags[snapset.TagMountPoint]
		out[i].Filesystem = out[i].Tags[snapset.TagFilesystem]
	}
	if after != nil {
		return nil, after
	}
	return out, nil
}

// DeleteSnapshot implements fleet.SnapshotStore; deleting a snapshot that is gone is not an error.
func (s *SnapshotStore) DeleteSnapshot(ctx context.Context, snapshotID string) error {
	s.Journal.add("%s", OpDeleteSnapshot)
	before, after := s.fire(ctx, OpDeleteSnapshot)
	if before != nil {
		return before
	}
	if snapshotID == "" {
		return errors.New("fleetfake: delete snapshot: no snapshot id")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.snaps[snapshotID]; ok {
		delete(s.snaps, snapshotID)
		s.deleted = append(s.deleted, snapshotID)
	}
	return after
}

// sortedLocked returns copies of the snapshots keep accepts, ordered by id; s.mu is held.
func (s *SnapshotStore) sortedLocked(keep func(snapset.Snapshot) bool) []snapset.Snapshot {
	var out []snapset.Snapshot
	for _, sn := range s.snaps {
		if keep(sn) {
			out = append(out, cloneSnapshot(sn))
		}
	}
	slices.SortFunc(out, func(a, b snapset.Snapshot) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// checkTags applies EC2's tag limits.
func checkTags(tags map[string]string) error {
	if len(tags) > maxTagsPerResource {
		return fmt.Errorf("TagLimitExceeded: %d tags, at most %d", len(tags), maxTagsPerResource)
	}
	for k, v := range tags {
		switch {
		case k == "" || !utf8.ValidString(k) || utf8.RuneCountInString(k) > maxTagKeyRunes:
			return fmt.Errorf("InvalidParameterValue: tag key %q must be 1-%d UTF-8 characters", k, maxTagKeyRunes)
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			return fmt.Errorf("InvalidParameterValue: tag key %q uses the reserved aws: prefix", k)
		case !utf8.ValidString(v) || utf8.RuneCountInString(v) > maxTagValueRunes:
			return fmt.Errorf("InvalidParameterValue: value of tag %q must be at most %d UTF-8 characters, got %d bytes", k, maxTagValueRunes, len(v))
		}
	}
	return nil
}

func cloneSnapshot(sn snapset.Snapshot) snapset.Snapshot {
	sn.Tags = maps.Clone(sn.Tags)
	return sn
}

func cloneTagMap(m map[string]map[string]string) map[string]map[string]string {
	out := make(map[string]map[string]string, len(m))
	for id, t := range m {
		out[id] = maps.Clone(t)
	}
	return out
}
