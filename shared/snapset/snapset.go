// Package snapset models a snapshot set: the snapshots of one backup, one per data volume, all
// carrying the same set id, status and metadata as tags. Everything that restores, expires or
// prunes works from these tags, so their schema lives here and only here.
package snapset

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// TagPrefix starts every tag pgfleet writes on a snapshot.
const TagPrefix = "pgfleet:"

// Tag keys of the set metadata schema (documented in the README).
const (
	TagCluster        = TagPrefix + "cluster"
	TagSetID          = TagPrefix + "set-id"
	TagStatus         = TagPrefix + "status"
	TagStatusReason   = TagPrefix + "status-reason"
	TagSourceInstance = TagPrefix + "source-instance"
	TagSourceRole     = TagPrefix + "source-role"
	TagDevice         = TagPrefix + "device"
	TagMountPoint     = TagPrefix + "mount-point"
	TagFilesystem     = TagPrefix + "filesystem"
	TagPGVersion      = TagPrefix + "pg-version"
	TagTimeline       = TagPrefix + "timeline"
	TagRedoLSN        = TagPrefix + "redo-lsn"
	TagRedoWALFile    = TagPrefix + "redo-wal-file"
	TagSnapshotLSN    = TagPrefix + "snapshot-lsn"
	TagConsistency    = TagPrefix + "consistency"
	TagFrozenMS       = TagPrefix + "frozen-ms"
	TagCreatedBy      = TagPrefix + "created-by"
	TagCreatedAt      = TagPrefix + "created-at"
	TagVolumeCount    = TagPrefix + "volume-count"
)

// CreatedByValue is the created-by tag of every set pgfleet makes.
const CreatedByValue = "pgfleet"

// Status is a set's pgfleet status: pending while a backup run owns it, then completed or failed.
type Status string

// Set statuses.
const (
	StatusPending   Status = "pending"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
)

// SnapshotState is the storage layer's own state of one snapshot (EBS: pending, completed, error).
type SnapshotState string

// Snapshot states.
const (
	StatePending   SnapshotState = "pending"
	StateCompleted SnapshotState = "completed"
	StateError     SnapshotState = "error"
)

// Meta is the metadata every snapshot of a set carries.
type Meta struct {
	Cluster        string
	SetID          string
	Status         Status
	StatusReason   string
	SourceInstance string
	SourceRole     string
	PGVersion      string
	Timeline       int
	RedoLSN        string
	RedoWALFile    string
	SnapshotLSN    string
	Consistency    string
	FrozenMS       int64
	CreatedAt      time.Time
	VolumeCount    int
}

// Snapshot is one snapshot of a set: one data volume.
type Snapshot struct {
	ID         string
	VolumeID   string
	Device     string
	MountPoint string
	Filesystem string
	SizeGiB    int64
	State      SnapshotState
	StartTime  time.Time
	Tags       map[string]string
}

// Set is the snapshots of one backup.
type Set struct {
	Meta
	Snapshots []Snapshot
}

// Tags returns the set-level tags (identical on every snapshot of the set).
func (m Meta) Tags() map[string]string {
	t := map[string]string{
		TagCluster:        m.Cluster,
		TagSetID:          m.SetID,
		TagStatus:         string(m.Status),
		TagSourceInstance: m.SourceInstance,
		TagCreatedBy:      CreatedByValue,
		TagCreatedAt:      m.CreatedAt.UTC().Format(time.RFC3339),
	}
	put := func(k, v string) {
		if v != "" {
			t[k] = v
		}
	}
	put(TagStatusReason, truncate(m.StatusReason, 255))
	put(TagSourceRole, m.SourceRole)
	put(TagPGVersion, m.PGVersion)
	if m.Timeline > 0 {
		t[TagTimeline] = strconv.Itoa(m.Timeline)
	}
	put(TagRedoLSN, m.RedoLSN)
	put(TagRedoWALFile, m.RedoWALFile)
	put(TagSnapshotLSN, m.SnapshotLSN)
	put(TagConsistency, m.Consistency)
	if m.FrozenMS > 0 {
		t[TagFrozenMS] = strconv.FormatInt(m.FrozenMS, 10)
	}
	if m.VolumeCount > 0 {
		t[TagVolumeCount] = strconv.Itoa(m.VolumeCount)
	}
	return t
}

// VolumeTags returns the per-snapshot tags that map a snapshot back to its device at launch.
func (s Snapshot) VolumeTags() map[string]string {
	t := map[string]string{}
	if s.Device != "" {
		t[TagDevice] = s.Device
	}
	if s.MountPoint != "" {
		t[TagMountPoint] = s.MountPoint
	}
	if s.Filesystem != "" {
		t[TagFilesystem] = s.Filesystem
	}
	return t
}

// MetaFromTags reads set metadata from one snapshot's tags.
func MetaFromTags(tags map[string]string) (Meta, error) {
	m := Meta{
		Cluster:        tags[TagCluster],
		SetID:          tags[TagSetID],
		Status:         Status(tags[TagStatus]),
		StatusReason:   tags[TagStatusReason],
		SourceInstance: tags[TagSourceInstance],
		SourceRole:     tags[TagSourceRole],
		PGVersion:      tags[TagPGVersion],
		RedoLSN:        tags[TagRedoLSN],
		RedoWALFile:    tags[TagRedoWALFile],
		SnapshotLSN:    tags[TagSnapshotLSN],
		Consistency:    tags[TagConsistency],
	}
	if m.Cluster == "" || m.SetID == "" {
		return Meta{}, fmt.Errorf("snapshot has no %s or %s tag", TagCluster, TagSetID)
	}
	switch m.Status {
	case StatusPending, StatusCompleted, StatusFailed:
	default:
		return Meta{}, fmt.Errorf("set %s: unknown %s %q", m.SetID, TagStatus, m.Status)
	}
	var err error
	if v := tags[TagTimeline]; v != "" {
		if m.Timeline, err = strconv.Atoi(v); err != nil {
			return Meta{}, fmt.Errorf("set %s: bad %s %q: %w", m.SetID, TagTimeline, v, err)
		}
	}
	if v := tags[TagFrozenMS]; v != "" {
		if m.FrozenMS, err = strconv.ParseInt(v, 10, 64); err != nil {
			return Meta{}, fmt.Errorf("set %s: bad %s %q: %w", m.SetID, TagFrozenMS, v, err)
		}
	}
	if v := tags[TagVolumeCount]; v != "" {
		if m.VolumeCount, err = strconv.Atoi(v); err != nil {
			return Meta{}, fmt.Errorf("set %s: bad %s %q: %w", m.SetID, TagVolumeCount, v, err)
		}
	}
	if v := tags[TagCreatedAt]; v != "" {
		if m.CreatedAt, err = time.Parse(time.RFC3339, v); err != nil {
			return Meta{}, fmt.Errorf("set %s: bad %s %q: %w", m.SetID, TagCreatedAt, v, err)
		}
	}
	return m, nil
}

// Group turns snapshots (with their tags) into sets, newest first. Snapshots whose tags do not
// parse are returned separately so callers can report them instead of silently dropping them.
func Group(snaps []Snapshot) (sets []Set, unreadable []Snapshot) {
	byID := map[string]*Set{}
	var order []string
	for _, s := range snaps {
		m, err := MetaFromTags(s.Tags)
		if err != nil {
			unreadable = append(unreadable, s)
			continue
		}
		if s.Device == "" {
			s.Device = s.Tags[TagDevice]
		}
		if s.MountPoint == "" {
			s.MountPoint = s.Tags[TagMountPoint]
		}
		if s.Filesystem == "" {
			s.Filesystem = s.Tags[TagFilesystem]
		}
		set, ok := byID[m.SetID]
		if !ok {
			set = &Set{Meta: m}
			byID[m.SetID] = set
			order = append(order, m.SetID)
		} else {
			set.Meta = mergeMeta(set.Meta, m)
		}
		set.Snapshots = append(set.Snapshots, s)
	}
	for _, id := range order {
		set := byID[id]
		sort.Slice(set.Snapshots, func(i, j int) bool { return set.Snapshots[i].Device < set.Snapshots[j].Device })
		sets = append(sets, *set)
	}
	SortNewestFirst(sets)
	return sets, unreadable
}

// mergeMeta combines the metadata of two snapshots of one set. Tag updates are not atomic across
// snapshots: a set whose snapshots disagree on status is treated by its least finished status.
func mergeMeta(a, b Meta) Meta {
	rank := map[Status]int{StatusFailed: 0, StatusPending: 1, StatusCompleted: 2}
	if rank[b.Status] < rank[a.Status] {
		a.Status, a.StatusReason = b.Status, b.StatusReason
	}
	if b.CreatedAt.After(a.CreatedAt) {
		a.CreatedAt = b.CreatedAt
	}
	return a
}

// SortNewestFirst orders sets by creation time, newest first, set id breaking ties.
func SortNewestFirst(sets []Set) {
	sort.SliceStable(sets, func(i, j int) bool {
		if !sets[i].CreatedAt.Equal(sets[j].CreatedAt) {
			return sets[i].CreatedAt.After(sets[j].CreatedAt)
		}
		return sets[i].SetID > sets[j].SetID
	})
}

// Completed reports whether the set can be restored: pgfleet marked it completed, every snapshot
// finished in the storage layer, and no snapshot is missing.
func (s Set) Completed() bool {
	if s.Status != StatusCompleted || len(s.Snapshots) == 0 {
		return false
	}
	if s.VolumeCount > 0 && len(s.Snapshots) != s.VolumeCount {
		return false
	}
	for _, sn := range s.Snapshots {
		if sn.State != StateCompleted {
			return false
		}
	}
	return true
}

// InProgress reports whether any part of the set is still being written: a pending status or a
// snapshot the storage layer has not finished. Such a set is never deleted.
func (s Set) InProgress() bool {
	if s.Status == StatusPending {
		return true
	}
	for _, sn := range s.Snapshots {
		if sn.State == StatePending {
			return true
		}
	}
	return false
}

// Failed reports whether the set is unusable: marked failed or a snapshot in error.
func (s Set) Failed() bool {
	if s.Status == StatusFailed {
		return true
	}
	for _, sn := range s.Snapshots {
		if sn.State == StateError {
			return true
		}
	}
	return false
}

// SnapshotIDs lists the ids of the set's snapshots.
func (s Set) SnapshotIDs() []string {
	ids := make([]string, 0, len(s.Snapshots))
	for _, sn := range s.Snapshots {
		ids = append(ids, sn.ID)
	}
	return ids
}

// NewestCompleted returns the newest completed set, in the order of SortNewestFirst (set id
// breaking ties of creation time, which tags keep to the second), so it names the same set that
// retention keeps as the newest.
func NewestCompleted(sets []Set) (Set, bool) {
	sorted := append([]Set(nil), sets...)
	SortNewestFirst(sorted)
	for _, s := range sorted {
		if s.Completed() {
			return s, true
		}
	}
	return Set{}, false
}

// OldestCompleted returns the oldest completed set, in the order of SortNewestFirst. It is not
// the WAL pruner's boundary: a newer set can need older WAL (see PruneBoundary).
func OldestCompleted(sets []Set) (Set, bool) {
	sorted := append([]Set(nil), sets...)
	SortNewestFirst(sorted)
	for i := len(sorted) - 1; i >= 0; i-- {
		if sorted[i].Completed() {
			return sorted[i], true
		}
	}
	return Set{}, false
}

// NewSetID makes a sortable set id from the cluster and the creation time.
func NewSetID(cluster string, at time.Time) string {
	return fmt.Sprintf("%s-%s", cluster, at.UTC().Format("20060102T150405.000Z"))
}

func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary: a tag value must stay valid UTF-8.
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
