// Package paramstore reads cluster configurations from SSM Parameter Store: one parameter per
// cluster, named <prefix>/<cluster>, holding the cluster's JSON document (config.Source).
package paramstore

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	awsx "github.com/pgfleet/pgfleet/shared/aws"
	"github.com/pgfleet/pgfleet/shared/config"
)

// API is the part of SSM the Source calls.
type API interface {
	GetParameter(ctx context.Context, params *ssm.GetParameterInput, optFns ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
	GetParametersByPath(ctx context.Context, params *ssm.GetParametersByPathInput, optFns ...func(*ssm.Options)) (*ssm.GetParametersByPathOutput, error)
}

var (
	_ API           = (*ssm.Client)(nil)
	_ config.Source = (*Source)(nil)
	_ config.Lister = (*Source)(nil)
)

// Source loads cluster configurations from Parameter Store.
type Source struct {
	api    API
	prefix string
}

// New returns a Source reading <prefix>/<cluster> (e.g. prefix "/pgfleet/clusters").
func New(api API, prefix string) *Source {
	return &Source{api: api, prefix: strings.TrimSuffix(prefix, "/")}
}

// ParameterName is the parameter that holds a cluster's configuration.
func (s *Source) ParameterName(cluster string) string { return s.prefix + "/" + cluster }

// Load implements config.Source. An unknown cluster (no such parameter, or a name that cannot
// be a cluster) fails with config.ErrUnknownCluster.
func (s *Source) Load(ctx context.Context, cluster string) (config.Cluster, error) {
	if !config.ValidName(cluster) {
		return config.Cluster{}, fmt.Errorf("%w %q: not a valid cluster name", config.ErrUnknownCluster, cluster)
	}
	name := s.ParameterName(cluster)
	out, err := s.api.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name), WithDecryption: aws.Bool(true)})
	if awsx.IsCode(err, "ParameterNotFound") {
		return config.Cluster{}, fmt.Errorf("%w %q: no SSM parameter %s", config.ErrUnknownCluster, cluster, name)
	}
	if err != nil {
		return config.Cluster{}, fmt.Errorf("read configuration of cluster %q from SSM parameter %s: %w", cluster, name, err)
	}
	if out.Parameter == nil || out.Parameter.Value == nil {
		return config.Cluster{}, fmt.Errorf("SSM parameter %s has no value", name)
	}
	c, err := config.Parse([]byte(*out.Parameter.Value))
	if err != nil {
		return config.Cluster{}, fmt.Errorf("SSM parameter %s: %w", name, err)
	}
	if c.Name != cluster {
		return config.Cluster{}, fmt.Errorf("SSM parameter %s: name %q does not match the parameter's cluster %q", name, c.Name, cluster)
	}
	return c, nil
}

// List implements config.Lister: the clusters with a parameter directly under the prefix
// (GetParametersByPath, not recursive, every page). Values are not decrypted: only the names
// are needed, and a document that does not parse fails when it is loaded. It needs
// ssm:GetParametersByPath on the prefix itself.
func (s *Source) List(ctx context.Context) ([]string, error) {
	var names []string
	p := ssm.NewGetParametersByPathPaginator(s.api, &ssm.GetParametersByPathInput{
		Path: aws.String(s.prefix), Recursive: aws.Bool(false), WithDecryption: aws.Bool(false),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list cluster configurations under SSM path %s: %w", s.prefix, err)
		}
		for _, prm := range page.Parameters {
			name, ok := strings.CutPrefix(aws.ToString(prm.Name), s.prefix+"/")
			if ok && config.ValidName(name) {
				names = append(names, name)
			}
		}
	}
	sort.Strings(names)
	return names, nil
}
