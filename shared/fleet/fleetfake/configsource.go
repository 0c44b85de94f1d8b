package fleetfake

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/pgfleet/pgfleet/shared/config"
)

// ConfigSource is a fake config.Source over a map of clusters. Clusters are stored as given:
// put only validated ones (config.Parse) unless the test is about a bad one.
type ConfigSource struct {
	Faults
	Journal *Journal

	mu       sync.Mutex
	clusters map[string]config.Cluster
	loads    []string
}

// NewConfigSource returns a source that knows the given clusters.
func NewConfigSource(clusters ...config.Cluster) *ConfigSource {
	s := &ConfigSource{clusters: map[string]config.Cluster{}}
	for _, c := range clusters {
		s.Put(c)
	}
	return s
}

// Put adds or replaces a cluster.
func (s *ConfigSource) Put(c config.Cluster) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clusters[c.Name] = c
}

// Loads returns the cluster names Load was asked for.
func (s *ConfigSource) Loads() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.loads)
}

// Load implements config.Source; an unknown name fails with config.ErrUnknownCluster.
func (s *ConfigSource) Load(ctx context.Context, cluster string) (config.Cluster, error) {
	s.mu.Lock()
	s.loads = append(s.loads, cluster)
	s.mu.Unlock()
	s.Journal.add("%s", OpLoad)
	before, after := s.fire(ctx, OpLoad)
	if before != nil {
		return config.Cluster{}, before
	}
	s.mu.Lock()
	c, ok := s.clusters[cluster]
	s.mu.Unlock()
	if !ok {
		return config.Cluster{}, fmt.Errorf("%w %q", config.ErrUnknownCluster, cluster)
	}
	if after != nil {
		return config.Cluster{}, after
	}
	return c, nil
}
