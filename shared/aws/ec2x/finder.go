// Package ec2x implements the EC2 side of the fleet ports: finding a cluster's members by tag
// (fleet.Finder) and taking, tagging, listing and deleting EBS snapshot sets
// (fleet.SnapshotStore). Each adapter depends on a narrow interface listing only the EC2 calls
// it makes, with the SDK's signatures, so *ec2.Client, paginators and test fakes all fit.
package ec2x

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/pgfleet/pgfleet/shared/fleet"
)

// InstancesAPI is the part of EC2 the Finder calls.
type InstancesAPI interface {
	DescribeInstances(ctx context.Context, params *ec2.DescribeInstancesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
}

var (
	_ InstancesAPI                   = (*ec2.Client)(nil)
	_ ec2.DescribeInstancesAPIClient = InstancesAPI(nil)
	_ fleet.Finder                   = (*Finder)(nil)
)

// memberStates are the instance states a member can be in; terminated and shutting-down
// instances are gone for every purpose pgfleet has.
var memberStates = []string{"pending", "running", "stopping", "stopped"}

// Finder finds a cluster's members by tag.
type Finder struct {
	api InstancesAPI
	// PageSize is DescribeInstances' MaxResults (5-1000; 0 means 1000).
	PageSize int32
}

// NewFinder returns a Finder that calls api.
func NewFinder(api InstancesAPI) *Finder { return &Finder{api: api} }

// Members implements fleet.Finder: the instances that carry every one of tags, in a live state,
// ordered by instance id.
func (f *Finder) Members(ctx context.Context, tags map[string]string, roleTag string) ([]fleet.Member, error) {
	if len(tags) == 0 {
		return nil, errors.New("find members: no tags given; refusing to treat every instance of the account as a member")
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	filters := make([]types.Filter, 0, len(tags)+1)
	for _, k := range keys {
		filters = append(filters, types.Filter{Name: aws.String("tag:" + k), Values: []string{tags[k]}})
	}
	filters = append(filters, types.Filter{Name: aws.String("instance-state-name"), Values: memberStates})

	var members []fleet.Member
	p := ec2.NewDescribeInstancesPaginator(f.api, &ec2.DescribeInstancesInput{
		Filters:    filters,
		MaxResults: aws.Int32(pageSize(f.PageSize)),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describe instances tagged %v: %w", tags, err)
		}
		for _, r := range page.Reservations {
			for _, in := range r.Instances {
				members = append(members, member(in, roleTag))
			}
		}
	}
	sort.Slice(members, func(i, j int) bool { return members[i].InstanceID < members[j].InstanceID })
	return members, nil
}

func member(in types.Instance, roleTag string) fleet.Member {
	m := fleet.Member{
		InstanceID: aws.ToString(in.InstanceId),
		PrivateIP:  aws.ToString(in.PrivateIpAddress),
		LaunchTime: aws.ToTime(in.LaunchTime),
		Tags:       tagMap(in.Tags),
	}
	if in.State != nil {
		m.State = string(in.State.Name)
	}
	m.Role = m.Tags[roleTag]
	root := aws.ToString(in.RootDeviceName)
	for _, bdm := range in.BlockDeviceMappings {
		if bdm.Ebs == nil || bdm.Ebs.VolumeId == nil {
			continue
		}
		dev := aws.ToString(bdm.DeviceName)
		m.Volumes = append(m.Volumes, fleet.AttachedVolume{
			VolumeID: aws.ToString(bdm.Ebs.VolumeId),
			Device:   dev,
			Root:     dev != "" && dev == root,
		})
	}
	return m
}

func tagMap(tags []types.Tag) map[string]string {
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

// pageSize clamps a page size to what EC2's Describe calls accept.
func pageSize(n int32) int32 {
	switch {
	case n <= 0 || n > 1000:
		return 1000
	case n < 5:
		return 5
	}
	return n
}
