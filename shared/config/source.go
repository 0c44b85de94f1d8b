package config

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Source loads a cluster's configuration by name.
type Source interface {
	Load(ctx context.Context, cluster string) (Cluster, error)
}

// Lister is implemented by sources that can list the clusters they hold. The WAL pruner uses it,
// when its source has it, to refuse an archive another cluster's configuration also points at:
// each cluster's pruner would delete the other's WAL with its own boundary.
type Lister interface {
	// List returns the names of every cluster Load could be asked for, sorted.
	List(ctx context.Context) ([]string, error)
}

// DirSource reads <Dir>/<cluster>.json: the local form of the configuration.
type DirSource struct{ Dir string }

var _ Lister = DirSource{}

// List implements Lister: the <name>.json files of Dir whose name is a valid cluster name.
// Documents are not read here: a broken one is listed, and fails when loaded.
func (s DirSource) List(_ context.Context) ([]string, error) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, fmt.Errorf("list cluster configurations in %s: %w", s.Dir, err)
	}
	var names []string
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() || !nameRE.MatchString(name) {
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}

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
