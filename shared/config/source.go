package config

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Source loads a cluster's configuration by name.
type Source interface {
	Load(ctx context.Context, cluster string) (Cluster, error)
}

// DirSource reads <Dir>/<cluster>.json: the local form of the configuration.
type DirSource struct{ Dir string }

// Load implements Source.
func (s DirSource) Load(_ context.Context, cluster string) (Cluster, error) {
	if !nameRE.MatchString(cluster) {
		return Cluster{}, fmt.Errorf("%w %q: not a valid cluster name", ErrUnknownCluster, cluster)
	}
	p := filepath.Join(s.Dir, cluster+".json")
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Cluster{}, fmt.Errorf("%w %q: no configuration file %s", ErrUnknownCluster, cluster, p)
	}
	if err != nil {
		return Cluster{}, fmt.Errorf("read configuration of cluster %q: %w", cluster, err)
	}
	c, err := Parse(data)
	if err != nil {
		return Cluster{}, fmt.Errorf("%s: %w", p, err)
	}
	if c.Name != cluster {
		return Cluster{}, fmt.Errorf("%s: name %q does not match the file name's cluster %q", p, c.Name, cluster)
	}
	return c, nil
}

// ValidName reports whether s can name a cluster.
func ValidName(s string) bool { return nameRE.MatchString(s) }
