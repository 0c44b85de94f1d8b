package ec2x

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	awsx "github.com/pgfleet/pgfleet/shared/aws"
	"github.com/pgfleet/pgfleet/shared/fleet"
	"github.com/pgfleet/pgfleet/shared/snapset"
)

// SnapshotsAPI is the part of EC2 Snapshots calls.
type SnapshotsAPI interface {
	DescribeSnapshots(ctx context.Context, params *ec2.DescribeSnapshotsInput, optFns ...func(*ec2.Options)) (*ec2.DescribeSnapshotsOutput, error)
	CreateSnapshots(ctx context.Context, params *ec2.CreateSnapshotsInput, optFns ...func(*ec2.Options)) (*ec2.CreateSnapshotsOutput, error)
	CreateTags(ctx context.Context, params *ec2.CreateTagsInput, optFns ...func(*ec2.Options)) (*ec2.CreateTagsOutput, error)
	DeleteSnapshot(ctx context.Context, params *ec2.DeleteSnapshotInput, optFns ...func(*ec2.Options)) (*ec2.DeleteSnapshotOutput, error)
}

var (
	_ SnapshotsAPI                   = (*ec2.Client)(nil)
	_ ec2.DescribeSnapshotsAPIClient = SnapshotsAPI(nil)
	_ fleet.SnapshotStore            = (*Snapshots)(nil)
)

// EC2 request limits.
const (
	// MaxFilterValues is the most values one DescribeSnapshots filter takes.
	MaxFilterValues = 200
	// MaxTagResources is the most resources one CreateTags call takes.
	MaxTagResources = 1000
)

// Snapshots takes, tags, lists and deletes the EBS snapshots of snapshot sets.
type Snapshots struct {
	api SnapshotsAPI
	// PageSize is DescribeSnapshots' MaxResults (5-1000; 0 means 1000).
	PageSize int32
}

// NewSnapshots returns a snapshot store that calls api.
func NewSnapshots(api SnapshotsAPI) *Snapshots { return &Snapshots{api: api} }

// PendingSnapshots implements fleet.SnapshotStore: the account's pending snapshots of each
// volume. Volumes without one are absent from the map.
func (s *Snapshots) PendingSnapshots(ctx context.Context, volumeIDs []string) (map[string]int, error) {
	ids := slices.Clone(volumeIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	out := map[string]int{}
	for chunk := range slices.Chunk(ids, MaxFilterValues) {
		p := ec2.NewDescribeSnapshotsPaginator(s.api, &ec2.DescribeSnapshotsInput{
			OwnerIds: []string{"self"},
			Filters: []types.Filter{
				{Name: aws.String("volume-id"), Values: chunk},
				{Name: aws.String("status"), Values: []string{string(types.SnapshotStatePending)}},
			},
			MaxResults: aws.Int32(pageSize(s.PageSize)),
		})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("describe pending snapshots of %d volumes: %w", len(chunk), err)
			}
			for _, sn := range page.Snapshots {
				if sn.State == types.SnapshotStatePending {
					out[aws.ToString(sn.VolumeId)]++
				}
			}
		}
	}
	return out, nil
}

// CreateSet implements fleet.SnapshotStore with one CreateSnapshots call: EBS takes every
// attached data volume of the instance at one point in time (crash-consistent across volumes).
// The set tags go on through TagSpecifications, atomically with the snapshots; tags are never
// copied from the volumes.
func (s *Snapshots) CreateSet(ctx context.Context, req fleet.CreateSetRequest) ([]snapset.Snapshot, error) {
	if req.InstanceID == "" {
		return nil, errors.New("create snapshot set: no instance id")
	}
	in := &ec2.CreateSnapshotsInput{
		InstanceSpecification: &types.InstanceSpecification{
			InstanceId:        aws.String(req.InstanceID),
			ExcludeBootVolume: aws.Bool(true),
		},
		Description: aws.String(req.Description),
	}
	if len(req.ExcludeVolumeIDs) > 0 {
		in.InstanceSpecification.ExcludeDataVolumeIds = slices.Clone(req.ExcludeVolumeIDs)
	}
	if len(req.Tags) > 0 {
		in.TagSpecifications = []types.TagSpecification{{ResourceType: types.ResourceTypeSnapshot, Tags: ec2Tags(req.Tags)}}
	}
	// Sent once, never retried by the SDK: CreateSnapshots takes no client token, so a retry
	// after an answer lost on the way back would take a second set of snapshots under the same
	// set id, and the second would not be from inside the freeze. The caller marks the set
	// failed by its tags instead.
	out, err := s.api.CreateSnapshots(ctx, in, func(o *ec2.Options) { o.RetryMaxAttempts = 1 })
	if err != nil {
		return nil, fmt.Errorf("create snapshots of %s: %w", req.InstanceID, err)
	}
	if len(out.Snapshots) == 0 {
		return nil, fmt.Errorf("create snapshots of %s: EBS took none (no data volume left once the root and %d excluded volumes are left out)", req.InstanceID, len(req.ExcludeVolumeIDs))
	}
	snaps := make([]snapset.Snapshot, 0, len(out.Snapshots))
	for _, si := range out.Snapshots {
		sn := snapset.Snapshot{
			ID:        aws.ToString(si.SnapshotId),
			VolumeID:  aws.ToString(si.VolumeId),
			SizeGiB:   int64(aws.ToInt32(si.VolumeSize)),
			State:     snapshotState(si.State),
			StartTime: aws.ToTime(si.StartTime),
			Tags:      maps.Clone(req.Tags),
		}
		if sn.Tags == nil {
			sn.Tags = map[string]string{}
		}
		snaps = append(snaps, sn)
	}
	return snaps, nil
}

// TagSnapshots implements fleet.SnapshotStore. Snapshots that get identical tags share a
// CreateTags call (up to MaxTagResources each), so marking a whole set is usually one call.
func (s *Snapshots) TagSnapshots(ctx context.Context, tags map[string]map[string]string) error {
	groups := map[string][]string{}
	tagsOf := map[string]map[string]string{}
	for id, t := range tags {
		if len(t) == 0 {
			continue
		}
		k := tagKey(t)
		groups[k] = append(groups[k], id)
		tagsOf[k] = t
	}
	for _, k := range slices.Sorted(maps.Keys(groups)) {
		ids := groups[k]
		slices.Sort(ids)
		for chunk := range slices.Chunk(ids, MaxTagResources) {
			if _, err := s.api.CreateTags(ctx, &ec2.CreateTagsInput{Resources: chunk, Tags: ec2Tags(tagsOf[k])}); err != nil {
				return fmt.Errorf("tag %d snapshots (%s...): %w", len(chunk), chunk[0], err)
			}
		}
	}
	return nil
}

// ListSnapshots implements fleet.SnapshotStore: every snapshot of the account tagged with the
// cluster, whatever its set or state, ordered by snapshot id.
func (s *Snapshots) ListSnapshots(ctx context.Context, cluster string) ([]snapset.Snapshot, error) {
	if cluster == "" {
		return nil, errors.New("list snapshots: no cluster name")
	}
	p := ec2.NewDescribeSnapshotsPaginator(s.api, &ec2.DescribeSnapshotsInput{
		OwnerIds:   []string{"self"},
		Filters:    []types.Filter{{Name: aws.String("tag:" + snapset.TagCluster), Values: []string{cluster}}},
		MaxResults: aws.Int32(pageSize(s.PageSize)),
	})
	var out []snapset.Snapshot
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describe snapshots of cluster %s: %w", cluster, err)
		}
		for _, sn := range page.Snapshots {
			t := tagMap(sn.Tags)
			out = append(out, snapset.Snapshot{
				ID:         aws.ToString(sn.SnapshotId),
				VolumeID:   aws.ToString(sn.VolumeId),
				Device:     t[snapset.TagDevice],
				MountPoint: t[snapset.TagMountPoint],
				Filesystem: t[snapset.TagFilesystem],
				SizeGiB:    int64(aws.ToInt32(sn.VolumeSize)),
				State:      snapshotState(sn.State),
				StartTime:  aws.ToTime(sn.StartTime),
				Tags:       t,
			})
		}
	}
	sortSnapshots(out)
	return out, nil
}

// DeleteSnapshot implements fleet.SnapshotStore; a snapshot that no longer exists is deleted.
func (s *Snapshots) DeleteSnapshot(ctx context.Context, snapshotID string) error {
	if snapshotID == "" {
		return errors.New("delete snapshot: no snapshot id")
	}
	_, err := s.api.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(snapshotID)})
	if err != nil && !awsx.IsCode(err, "InvalidSnapshot.NotFound") {
		return fmt.Errorf("delete snapshot %s: %w", snapshotID, err)
	}
	return nil
}

// snapshotState maps EBS's state. CreateSnapshots answers pending in EBS (moto leaves it out):
// an empty state is a snapshot not yet known to be finished. Other states (recoverable,
// recovering: in the Recycle Bin) pass through and count as neither pending nor completed.
func snapshotState(s types.SnapshotState) snapset.SnapshotState {
	switch s {
	case types.SnapshotStatePending, "":
		return snapset.StatePending
	case types.SnapshotStateCompleted:
		return snapset.StateCompleted
	case types.SnapshotStateError:
		return snapset.StateError
	}
	return snapset.SnapshotState(s)
}

// ec2Tags turns a map into EC2 tags, sorted by key so requests are deterministic.
func ec2Tags(m map[string]string) []types.Tag {
	out := make([]types.Tag, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

// tagKey is a canonical form of a tag map, equal for equal maps.
func tagKey(m map[string]string) string {
	keys := slices.Sorted(maps.Keys(m))
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(m[k])
		b.WriteByte(0)
	}
	return b.String()
}

// sortSnapshots orders snapshots by id, so listings are deterministic.
func sortSnapshots(s []snapset.Snapshot) {
	sort.Slice(s, func(i, j int) bool { return s[i].ID < s[j].ID })
}
