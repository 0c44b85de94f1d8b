package ec2x_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/pgfleet/pgfleet/shared/aws/ec2x"
	"github.com/pgfleet/pgfleet/shared/fleet"
	"github.com/pgfleet/pgfleet/shared/local/moto"
	"github.com/pgfleet/pgfleet/shared/snapset"
)

// moto's default AMIs include ami-12c6146b (root device /dev/sda1).
const amiID = "ami-12c6146b"

// The Finder on one moto server: the subtests use clusters of their own.
func TestFinder(t *testing.T) {
	t.Parallel()
	srv := moto.StartForTest(t)
	t.Run("members", func(t *testing.T) { testFinderMembers(t, srv) })
	t.Run("pages", func(t *testing.T) { testFinderPages(t, srv) })
}

// The snapshot store on one moto server: every subtest works on a cluster (or instance) of its
// own, and faults are injected client-side, so they do not interfere.
func TestSnapshots(t *testing.T) {
	t.Parallel()
	srv := moto.StartForTest(t)
	t.Run("CreateSet", func(t *testing.T) { testCreateSet(t, srv) })
	t.Run("ListSnapshots filters by cluster", func(t *testing.T) { testListSnapshotsFiltersByCluster(t, srv) })
	t.Run("TagSnapshots and DeleteSnapshot", func(t *testing.T) { testTagAndDelete(t, srv) })
	t.Run("DeleteSnapshot fault", func(t *testing.T) { testDeleteSnapshotFault(t, srv) })
	t.Run("CreateSet fault", func(t *testing.T) { testCreateSetFault(t, srv) })
	t.Run("PendingSnapshots requests", func(t *testing.T) { testPendingSnapshotsRequests(t, srv) })
}

func testFinderMembers(t *testing.T, srv *moto.Server) {
	c, rec := newEC2(t, srv)
	ctx := context.Background()
	replica := runInstance(t, c, map[string]string{"pgfleet:cluster": "main", "pgfleet:role": "replica", "Name": "pg-1"})
	runInstance(t, c, map[string]string{"pgfleet:cluster": "other", "pgfleet:role": "replica"})
	gone := runInstance(t, c, map[string]string{"pgfleet:cluster": "main", "pgfleet:role": "primary"})
	if _, err := c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{gone}}); err != nil {
		t.Fatal(err)
	}

	f := ec2x.NewFinder(c)
	members, err := f.Members(ctx, map[string]string{"pgfleet:cluster": "main"}, "pgfleet:role")
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 1 {
		t.Fatalf("found %d members, want only the running replica of main: %+v", len(members), members)
	}
	m := members[0]
	if m.InstanceID != replica || m.Role != fleet.RoleReplica || m.State != "running" || m.PrivateIP == "" || m.LaunchTime.IsZero() || m.Tags["Name"] != "pg-1" {
		t.Fatalf("member %+v", m)
	}
	var root []string
	for _, v := range m.Volumes {
		if v.Root {
			root = append(root, v.Device)
		}
		if !strings.HasPrefix(v.VolumeID, "vol-") {
			t.Errorf("volume %+v has no volume id", v)
		}
	}
	if !slices.Equal(root, []string{"/dev/sda1"}) {
		t.Fatalf("root volumes %v, want exactly /dev/sda1: %+v", root, m.Volumes)
	}
	var data []string
	for _, v := range m.DataVolumes() {
		data = append(data, v.Device)
	}
	if slices.Sort(data); !slices.Equal(data, []string{"/dev/sdf", "/dev/sdg"}) {
		t.Fatalf("data volumes %v, want /dev/sdf and /dev/sdg", data)
	}

	// Every tag must match; the states filter is sent.
	if ms, err := f.Members(ctx, map[string]string{"pgfleet:cluster": "main", "env": "prod"}, "pgfleet:role"); err != nil || len(ms) != 0 {
		t.Fatalf("with a tag no instance has: %d members, %v", len(ms), err)
	}
	in := rec.Inputs("DescribeInstances")[0].(*ec2.DescribeInstancesInput)
	if got := filterValues(in.Filters, "instance-state-name"); !slices.Equal(got, []string{"pending", "running", "stopping", "stopped"}) {
		t.Fatalf("state filter %v", got)
	}
	if _, err := f.Members(ctx, nil, "pgfleet:role"); err == nil {
		t.Fatal("no tags: every instance of the account would be a member")
	}
}

// Members follows DescribeInstances pages (moto pages by reservation).
func testFinderPages(t *testing.T, srv *moto.Server) {
	c, rec := newEC2(t, srv)
	for range 7 {
		runInstance(t, c, map[string]string{"pgfleet:cluster": "big"})
	}
	f := ec2x.NewFinder(c)
	f.PageSize = 5
	members, err := f.Members(context.Background(), map[string]string{"pgfleet:cluster": "big"}, "pgfleet:role")
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 7 || rec.Count("DescribeInstances") != 2 {
		t.Fatalf("%d members in %d DescribeInstances calls, want 7 in 2", len(members), rec.Count("DescribeInstances"))
	}
	if !slices.IsSortedFunc(members, func(a, b fleet.Member) int { return strings.Compare(a.InstanceID, b.InstanceID) }) {
		t.Fatal("members not ordered by instance id")
	}
}

func testCreateSet(t *testing.T, srv *moto.Server) {
	c, rec := newEC2(t, srv)
	ctx := context.Background()
	id := runInstance(t, c, map[string]string{"pgfleet:cluster": "create", "pgfleet:role": "replica"})
	m := member(t, c, "create")
	s := ec2x.NewSnapshots(c)
	tags := setTags("create", "create-1")

	snaps, err := s.CreateSet(ctx, fleet.CreateSetRequest{InstanceID: id, Description: "pgfleet create set create-1", Tags: tags})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := volumeIDs(snaps), dataVolumeIDs(m); !slices.Equal(got, want) {
		t.Fatalf("snapshotted volumes %v, want exactly the data volumes %v (boot excluded)", got, want)
	}
	for _, sn := range snaps {
		if !strings.HasPrefix(sn.ID, "snap-") || !maps.Equal(sn.Tags, tags) || sn.SizeGiB == 0 || sn.StartTime.IsZero() {
			t.Fatalf("snapshot %+v", sn)
		}
		// moto's CreateSnapshots answer has no state; EBS says pending. Either way: pending.
		if sn.State != snapset.StatePending {
			t.Fatalf("snapshot state %q right after CreateSnapshots, want pending", sn.State)
		}
	}
	// The tags are stored on every snapshot, not just echoed back.
	listed, err := s.ListSnapshots(ctx, "create")
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 2 {
		t.Fatalf("listed %d snapshots, want 2", len(listed))
	}
	for _, sn := range listed {
		if !maps.Equal(sn.Tags, tags) || sn.State != snapset.StateCompleted {
			t.Fatalf("listed snapshot %+v: tags or state wrong", sn)
		}
	}
	in := rec.Inputs("CreateSnapshots")[0].(*ec2.CreateSnapshotsInput)
	if in.CopyTagsFromSource != "" || !aws.ToBool(in.InstanceSpecification.ExcludeBootVolume) || len(in.TagSpecifications) != 1 || in.TagSpecifications[0].ResourceType != types.ResourceTypeSnapshot {
		t.Fatalf("CreateSnapshots input %+v", in)
	}

	// ExcludeVolumeIDs reaches EBS. moto 5.2.1 ignores ExcludeDataVolumeIds and snapshots every
	// data volume, so what is asserted here is the request, plus what moto does.
	excluded := dataVolumeIDs(m)[1]
	snaps, err = s.CreateSet(ctx, fleet.CreateSetRequest{InstanceID: id, ExcludeVolumeIDs: []string{excluded}, Tags: setTags("create", "create-2")})
	if err != nil {
		t.Fatal(err)
	}
	in = rec.Inputs("CreateSnapshots")[1].(*ec2.CreateSnapshotsInput)
	if !slices.Equal(in.InstanceSpecification.ExcludeDataVolumeIds, []string{excluded}) {
		t.Fatalf("ExcludeDataVolumeIds = %v, want [%s]", in.InstanceSpecification.ExcludeDataVolumeIds, excluded)
	}
	if len(snaps) != 2 {
		t.Fatalf("moto took %d snapshots with one volume excluded; it used to ignore the exclusion (2): re-check and tighten this test", len(snaps))
	}

	if _, err := s.CreateSet(ctx, fleet.CreateSetRequest{}); err == nil {
		t.Fatal("CreateSet without an instance id")
	}
	// An instance with nothing but its root volume yields no set, and says so.
	bare, err := c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(amiID), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSet(ctx, fleet.CreateSetRequest{InstanceID: aws.ToString(bare.Instances[0].InstanceId), Tags: tags}); err == nil || !strings.Contains(err.Error(), "took none") {
		t.Fatalf("root-only instance: err = %v, want a \"took none\" error", err)
	}
	var ae smithy.APIError
	if _, err := s.CreateSet(ctx, fleet.CreateSetRequest{InstanceID: "i-00000000000000000", Tags: tags}); !errors.As(err, &ae) {
		t.Fatalf("unknown instance: err = %v, want an API error", err)
	}
}

// ListSnapshots returns exactly the cluster's snapshots. moto 5.2.1 ignores DescribeSnapshots'
// MaxResults (one page, whatever the size), so against moto the page size is asserted on the
// request; TestListSnapshotsFollowsPages covers paging with a fake.
func testListSnapshotsFiltersByCluster(t *testing.T, srv *moto.Server) {
	c, rec := newEC2(t, srv)
	ctx := context.Background()
	vol := createVolume(t, c)
	var want []string
	for i := range 12 {
		want = append(want, snapshot(t, c, vol, setTags("list", fmt.Sprintf("list-%02d", i))))
	}
	for i := range 3 {
		snapshot(t, c, vol, setTags("list-other", fmt.Sprintf("list-other-%d", i)))
	}
	snapshot(t, c, vol, nil)

	s := ec2x.NewSnapshots(c)
	s.PageSize = 5
	rec.Reset()
	got, err := s.ListSnapshots(ctx, "list")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	if ids := snapshotIDs(got); !slices.Equal(ids, want) {
		t.Fatalf("listed %v, want the 12 snapshots of list %v", ids, want)
	}
	for _, sn := range got {
		if sn.Tags[snapset.TagCluster] != "list" || sn.VolumeID != vol || sn.State != snapset.StateCompleted || sn.SizeGiB != 1 {
			t.Fatalf("snapshot %+v", sn)
		}
	}
	calls := rec.Inputs("DescribeSnapshots")
	if len(calls) != 1 {
		t.Fatalf("%d DescribeSnapshots calls; moto answers in one page", len(calls))
	}
	in := calls[0].(*ec2.DescribeSnapshotsInput)
	if aws.ToInt32(in.MaxResults) != 5 || !slices.Equal(in.OwnerIds, []string{"self"}) || !slices.Equal(filterValues(in.Filters, "tag:pgfleet:cluster"), []string{"list"}) {
		t.Fatalf("DescribeSnapshots input: max %d, owners %v, filters %+v", aws.ToInt32(in.MaxResults), in.OwnerIds, in.Filters)
	}
	if _, err := s.ListSnapshots(ctx, ""); err == nil {
		t.Fatal("empty cluster name listed")
	}
}

// Paging with a fake that serves 12 snapshots 5 at a time.
func TestListSnapshotsFollowsPages(t *testing.T) {
	f := &fakeSnapshots{}
	for i := range 12 {
		f.snaps = append(f.snaps, types.Snapshot{SnapshotId: aws.String(fmt.Sprintf("snap-%02d", i)), VolumeId: aws.String("vol-1"), State: types.SnapshotStateCompleted,
			Tags: []types.Tag{{Key: aws.String(snapset.TagCluster), Value: aws.String("main")}, {Key: aws.String(snapset.TagDevice), Value: aws.String("/dev/sdf")}}})
	}
	s := ec2x.NewSnapshots(f)
	s.PageSize = 5
	got, err := s.ListSnapshots(context.Background(), "main")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 12 || len(f.calls) != 3 {
		t.Fatalf("%d snapshots in %d calls, want 12 in 3", len(got), len(f.calls))
	}
	if got[0].Device != "/dev/sdf" {
		t.Fatalf("device not read from the tag: %+v", got[0])
	}
	if f.calls[1].NextToken == nil || aws.ToInt32(f.calls[2].MaxResults) != 5 {
		t.Fatalf("pages not chained: %+v", f.calls)
	}
}

func testTagAndDelete(t *testing.T, srv *moto.Server) {
	c, rec := newEC2(t, srv)
	ctx := context.Background()
	id := runInstance(t, c, map[string]string{"pgfleet:cluster": "tag"})
	s := ec2x.NewSnapshots(c)
	snaps, err := s.CreateSet(ctx, fleet.CreateSetRequest{InstanceID: id, Tags: setTags("tag", "tag-1")})
	if err != nil {
		t.Fatal(err)
	}
	a, b := snaps[0].ID, snaps[1].ID
	rec.Reset()
	err = s.TagSnapshots(ctx, map[string]map[string]string{
		a: {snapset.TagStatus: "completed", snapset.TagFrozenMS: "12"},
		b: {snapset.TagStatus: "completed", snapset.TagFrozenMS: "12"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := rec.Count("CreateTags"); n != 1 {
		t.Fatalf("%d CreateTags calls for identical tags, want 1", n)
	}
	if err := s.TagSnapshots(ctx, map[string]map[string]string{a: {snapset.TagDevice: "/dev/sdf"}, b: {snapset.TagDevice: "/dev/sdg"}}); err != nil {
		t.Fatal(err)
	}
	if n := rec.Count("CreateTags"); n != 3 {
		t.Fatalf("%d CreateTags calls in all, want 3 (different tags cannot share a call)", n)
	}
	listed, err := s.ListSnapshots(ctx, "tag")
	if err != nil {
		t.Fatal(err)
	}
	for _, sn := range listed {
		if sn.Tags[snapset.TagStatus] != "completed" || sn.Tags[snapset.TagFrozenMS] != "12" || sn.Tags[snapset.TagSetID] != "tag-1" || sn.Device == "" {
			t.Fatalf("after tagging: %+v", sn)
		}
	}
	sets, unreadable := snapset.Group(listed)
	if len(sets) != 1 || len(unreadable) != 0 || !sets[0].Completed() {
		t.Fatalf("grouped: %+v, unreadable %+v", sets, unreadable)
	}

	if err := s.DeleteSnapshot(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSnapshot(ctx, a); err != nil {
		t.Fatalf("second delete (InvalidSnapshot.NotFound): %v", err)
	}
	listed, err = s.ListSnapshots(ctx, "tag")
	if err != nil || len(listed) != 1 || listed[0].ID != b {
		t.Fatalf("after delete: %+v, %v", listed, err)
	}
	if err := s.DeleteSnapshot(ctx, ""); err == nil {
		t.Fatal("empty snapshot id deleted")
	}
}

// Other delete failures are errors, not silently "done".
func testDeleteSnapshotFault(t *testing.T, srv *moto.Server) {
	c, _ := newEC2(t, srv, moto.FailOperationWith("DeleteSnapshot", 1, &smithy.GenericAPIError{Code: "InvalidSnapshot.InUse", Message: "in use by ami-1"}))
	vol := createVolume(t, c)
	id := snapshot(t, c, vol, setTags("fault", "fault-1"))
	s := ec2x.NewSnapshots(c)
	if err := s.DeleteSnapshot(context.Background(), id); err == nil || !strings.Contains(err.Error(), "InvalidSnapshot.InUse") {
		t.Fatalf("err = %v, want InvalidSnapshot.InUse", err)
	}
	if err := s.DeleteSnapshot(context.Background(), id); err != nil {
		t.Fatal(err)
	}
}

// A CreateSnapshots that fails is reported with the instance; the next call goes through.
func testCreateSetFault(t *testing.T, srv *moto.Server) {
	c, _ := newEC2(t, srv, moto.FailOperation("CreateSnapshots", 1))
	id := runInstance(t, c, map[string]string{"pgfleet:cluster": "fault"})
	s := ec2x.NewSnapshots(c)
	_, err := s.CreateSet(context.Background(), fleet.CreateSetRequest{InstanceID: id, Tags: setTags("fault", "fault-1")})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != moto.InjectedFaultCode || !strings.Contains(err.Error(), id) {
		t.Fatalf("err = %v, want the injected fault naming %s", err, id)
	}
	if snaps, err := s.CreateSet(context.Background(), fleet.CreateSetRequest{InstanceID: id, Tags: setTags("fault", "fault-1")}); err != nil || len(snaps) != 2 {
		t.Fatalf("second CreateSet: %d snapshots, %v", len(snaps), err)
	}
}

// moto has no pending snapshots: the request shape is asserted against moto, the counting with
// a fake.
func testPendingSnapshotsRequests(t *testing.T, srv *moto.Server) {
	c, rec := newEC2(t, srv)
	var ids []string
	for i := range 250 {
		ids = append(ids, fmt.Sprintf("vol-%017d", i))
	}
	ids = append(ids, ids[0]) // duplicates are asked once
	s := ec2x.NewSnapshots(c)
	got, err := s.PendingSnapshots(context.Background(), ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("moto reported pending snapshots: %v", got)
	}
	calls := rec.Inputs("DescribeSnapshots")
	if len(calls) != 2 {
		t.Fatalf("%d DescribeSnapshots calls for 250 volumes, want 2", len(calls))
	}
	var asked []string
	for i, call := range calls {
		in := call.(*ec2.DescribeSnapshotsInput)
		vols := filterValues(in.Filters, "volume-id")
		if want := []int{200, 50}[i]; len(vols) != want {
			t.Fatalf("call %d asks for %d volumes, want %d", i, len(vols), want)
		}
		if !slices.Equal(filterValues(in.Filters, "status"), []string{"pending"}) || !slices.Equal(in.OwnerIds, []string{"self"}) {
			t.Fatalf("call %d: filters %+v owners %v", i, in.Filters, in.OwnerIds)
		}
		asked = append(asked, vols...)
	}
	slices.Sort(asked)
	if !slices.Equal(asked, slices.Compact(slices.Sorted(slices.Values(ids)))) {
		t.Fatal("the chunks do not cover every volume exactly once")
	}
	if _, err := s.PendingSnapshots(context.Background(), nil); err != nil || rec.Count("DescribeSnapshots") != 2 {
		t.Fatalf("no volumes: err %v, calls %d (want no call)", err, rec.Count("DescribeSnapshots"))
	}
}

func TestPendingSnapshotsCounts(t *testing.T) {
	snap := func(id, vol string, st types.SnapshotState) types.Snapshot {
		return types.Snapshot{SnapshotId: aws.String(id), VolumeId: aws.String(vol), State: st}
	}
	f := &fakeSnapshots{snaps: []types.Snapshot{
		snap("snap-1", "vol-a", types.SnapshotStatePending),
		snap("snap-2", "vol-a", types.SnapshotStatePending),
		snap("snap-3", "vol-b", types.SnapshotStatePending),
		snap("snap-4", "vol-b", types.SnapshotStateCompleted), // a filter-ignoring answer is still counted right
		snap("snap-5", "vol-a", types.SnapshotStatePending),
		snap("snap-6", "vol-a", types.SnapshotStatePending),
		snap("snap-7", "vol-c", types.SnapshotStatePending),
	}}
	s := ec2x.NewSnapshots(f)
	s.PageSize = 5
	got, err := s.PendingSnapshots(context.Background(), []string{"vol-a", "vol-b", "vol-c", "vol-d"})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"vol-a": 4, "vol-b": 1, "vol-c": 1}; !maps.Equal(got, want) {
		t.Fatalf("pending = %v, want %v", got, want)
	}
	if len(f.calls) != 2 {
		t.Fatalf("%d calls, want 2 pages", len(f.calls))
	}
	f.err = &smithy.GenericAPIError{Code: "RequestLimitExceeded"}
	if _, err := s.PendingSnapshots(context.Background(), []string{"vol-a"}); err == nil {
		t.Fatal("an API error was swallowed")
	}
}

// Tag calls are cut at 1000 resources.
func TestTagSnapshotsChunks(t *testing.T) {
	f := &fakeSnapshots{}
	s := ec2x.NewSnapshots(f)
	tags := map[string]map[string]string{}
	for i := range 2500 {
		tags[fmt.Sprintf("snap-%05d", i)] = map[string]string{snapset.TagStatus: "failed"}
	}
	tags["snap-x"] = map[string]string{snapset.TagStatus: "completed"}
	tags["snap-empty"] = nil
	if err := s.TagSnapshots(context.Background(), tags); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	tagged := 0
	for _, in := range f.tagCalls {
		sizes = append(sizes, len(in.Resources))
		tagged += len(in.Resources)
	}
	slices.Sort(sizes)
	if !slices.Equal(sizes, []int{1, 500, 1000, 1000}) || tagged != 2501 {
		t.Fatalf("CreateTags sizes %v (%d tagged), want [1 500 1000 1000]", sizes, tagged)
	}
}

// --- builders and fakes ---

// newEC2 returns a client of srv whose calls a new Recorder sees.
func newEC2(t *testing.T, srv *moto.Server, apiOptions ...func(*middleware.Stack) error) (*ec2.Client, *moto.Recorder) {
	t.Helper()
	rec := &moto.Recorder{}
	cfg, err := moto.Config(context.Background(), srv.URL, config.WithAPIOptions(append([]func(*middleware.Stack) error{rec.Middleware}, apiOptions...)))
	if err != nil {
		t.Fatal(err)
	}
	return ec2.NewFromConfig(cfg), rec
}

// runInstance launches one instance with a root volume and data volumes /dev/sdf and /dev/sdg.
// moto drops the AMI's root volume when BlockDeviceMappings are given, so the root is listed too.
func runInstance(t *testing.T, c *ec2.Client, tags map[string]string) string {
	t.Helper()
	var tt []types.Tag
	for k, v := range tags {
		tt = append(tt, types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	ebs := func(dev string, size int32) types.BlockDeviceMapping {
		return types.BlockDeviceMapping{DeviceName: aws.String(dev), Ebs: &types.EbsBlockDevice{VolumeSize: aws.Int32(size), DeleteOnTermination: aws.Bool(true)}}
	}
	out, err := c.RunInstances(context.Background(), &ec2.RunInstancesInput{
		ImageId: aws.String(amiID), MinCount: aws.Int32(1), MaxCount: aws.Int32(1), InstanceType: types.InstanceTypeT3Micro,
		BlockDeviceMappings: []types.BlockDeviceMapping{ebs("/dev/sda1", 8), ebs("/dev/sdf", 10), ebs("/dev/sdg", 20)},
		TagSpecifications:   []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: tt}},
	})
	if err != nil {
		t.Fatalf("run instance: %v", err)
	}
	return aws.ToString(out.Instances[0].InstanceId)
}

func member(t *testing.T, c *ec2.Client, cluster string) fleet.Member {
	t.Helper()
	ms, err := ec2x.NewFinder(c).Members(context.Background(), map[string]string{"pgfleet:cluster": cluster}, "pgfleet:role")
	if err != nil || len(ms) != 1 {
		t.Fatalf("members of %s: %+v, %v", cluster, ms, err)
	}
	return ms[0]
}

func createVolume(t *testing.T, c *ec2.Client) string {
	t.Helper()
	out, err := c.CreateVolume(context.Background(), &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.VolumeId)
}

func snapshot(t *testing.T, c *ec2.Client, vol string, tags map[string]string) string {
	t.Helper()
	in := &ec2.CreateSnapshotInput{VolumeId: aws.String(vol)}
	if len(tags) > 0 {
		var tt []types.Tag
		for k, v := range tags {
			tt = append(tt, types.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
		in.TagSpecifications = []types.TagSpecification{{ResourceType: types.ResourceTypeSnapshot, Tags: tt}}
	}
	out, err := c.CreateSnapshot(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.SnapshotId)
}

func setTags(cluster, setID string) map[string]string {
	return map[string]string{
		snapset.TagCluster:     cluster,
		snapset.TagSetID:       setID,
		snapset.TagStatus:      string(snapset.StatusPending),
		snapset.TagCreatedBy:   snapset.CreatedByValue,
		snapset.TagCreatedAt:   "2026-11-21T12:00:00Z",
		snapset.TagVolumeCount: "2",
	}
}

func filterValues(fs []types.Filter, name string) []string {
	for _, f := range fs {
		if aws.ToString(f.Name) == name {
			return f.Values
		}
	}
	return nil
}

func volumeIDs(snaps []snapset.Snapshot) []string {
	var out []string
	for _, s := range snaps {
		out = append(out, s.VolumeID)
	}
	slices.Sort(out)
	return out
}

func snapshotIDs(snaps []snapset.Snapshot) []string {
	var out []string
	for _, s := range snaps {
		out = append(out, s.ID)
	}
	slices.Sort(out)
	return out
}

func dataVolumeIDs(m fleet.Member) []string {
	var out []string
	for _, v := range m.DataVolumes() {
		out = append(out, v.VolumeID)
	}
	slices.Sort(out)
	return out
}

// fakeSnapshots serves DescribeSnapshots from snaps in pages of MaxResults and records calls.
type fakeSnapshots struct {
	snaps    []types.Snapshot
	err      error
	calls    []ec2.DescribeSnapshotsInput
	tagCalls []ec2.CreateTagsInput
}

func (f *fakeSnapshots) DescribeSnapshots(_ context.Context, in *ec2.DescribeSnapshotsInput, _ ...func(*ec2.Options)) (*ec2.DescribeSnapshotsOutput, error) {
	f.calls = append(f.calls, *in)
	if f.err != nil {
		return nil, f.err
	}
	start := 0
	if in.NextToken != nil {
		fmt.Sscan(*in.NextToken, &start)
	}
	end := min(start+int(aws.ToInt32(in.MaxResults)), len(f.snaps))
	out := &ec2.DescribeSnapshotsOutput{Snapshots: f.snaps[start:end]}
	if end < len(f.snaps) {
		out.NextToken = aws.String(fmt.Sprint(end))
	}
	return out, nil
}

func (f *fakeSnapshots) CreateTags(_ context.Context, in *ec2.CreateTagsInput, _ ...func(*ec2.Options)) (*ec2.CreateTagsOutput, error) {
	f.tagCalls = append(f.tagCalls, *in)
	return &ec2.CreateTagsOutput{}, nil
}

func (f *fakeSnapshots) CreateSnapshots(context.Context, *ec2.CreateSnapshotsInput, ...func(*ec2.Options)) (*ec2.CreateSnapshotsOutput, error) {
	return nil, errors.New("fake: CreateSnapshots not scripted")
}

func (f *fakeSnapshots) DeleteSnapshot(context.Context, *ec2.DeleteSnapshotInput, ...func(*ec2.Options)) (*ec2.DeleteSnapshotOutput, error) {
	return nil, errors.New("fake: DeleteSnapshot not scripted")
}

// TestCreateSnapshotsIsSentOnce: with the SDK's default retryer, a 503 (the snapshots may have
// been taken) is not followed by a second CreateSnapshots, which would add snapshots to the set
// that were not taken inside the freeze.
func TestCreateSnapshotsIsSentOnce(t *testing.T) {
	url, requests := moto.Unavailable(t)
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion(moto.Region),
		config.WithCredentialsProvider(aws.AnonymousCredentials{}), config.WithBaseEndpoint(url))
	if err != nil {
		t.Fatal(err)
	}
	s := ec2x.NewSnapshots(ec2.NewFromConfig(cfg))
	_, err = s.CreateSet(context.Background(), fleet.CreateSetRequest{InstanceID: "i-0123456789abcdef0", Tags: map[string]string{snapset.TagSetID: "main-1"}})
	if err == nil {
		t.Fatal("no error from an endpoint that answers 503")
	}
	if n := requests(); n != 1 {
		t.Errorf("%d CreateSnapshots requests; want exactly 1 (the SDK retried a call that is not safe to repeat)", n)
	}
}
