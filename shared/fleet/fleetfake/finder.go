package fleetfake

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sort"
	"sync"

	"github.com/pgfleet/pgfleet/shared/fleet"
)

// Finder is a fake fleet.Finder over a list of instances. Like the EC2 adapter, it returns the
// instances carrying every asked tag, ordered by instance id, with Role read from the role tag.
type Finder struct {
	Faults
	Journal *Journal

	mu        sync.Mutex
	instances []fleet.Member
	calls     []MembersCall
}

// MembersCall is one recorded Members call.
type MembersCall struct {
	Tags    map[string]string
	RoleTag string
}

// NewFinder returns a Finder that knows the given instances.
func NewFinder(instances ...fleet.Member) *Finder {
	f := &Finder{}
	f.Add(instances...)
	return f
}

// Add adds instances (copied).
func (f *Finder) Add(instances ...fleet.Member) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range instances {
		f.instances = append(f.instances, cloneMember(m))
	}
}

// Members implements fleet.Finder.
func (f *Finder) Members(ctx context.Context, tags map[string]string, roleTag string) ([]fleet.Member, error) {
	f.mu.Lock()
	f.calls = append(f.calls, MembersCall{Tags: maps.Clone(tags), RoleTag: roleTag})
	f.mu.Unlock()
	f.Journal.add("%s", OpMembers)
	before, after := f.fire(ctx, OpMembers)
	if before != nil {
		return nil, before
	}
	if len(tags) == 0 {
		return nil, errors.New("fleetfake: find members: no tags given")
	}
	f.mu.Lock()
	var out []fleet.Member
	for _, m := range f.instances {
		if !carries(m.Tags, tags) {
			continue
		}
		m = cloneMember(m)
		if r, ok := m.Tags[roleTag]; ok {
			m.Role = r
		}
		out = append(out, m)
	}
	f.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].InstanceID < out[j].InstanceID })
	if after != nil {
		return nil, after
	}
	return out, nil
}

// Calls returns the recorded Members calls.
func (f *Finder) Calls() []MembersCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func carries(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func cloneMember(m fleet.Member) fleet.Member {
	m.Tags = maps.Clone(m.Tags)
	m.Volumes = slices.Clone(m.Volumes)
	return m
}
