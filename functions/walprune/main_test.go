package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/pgfleet/pgfleet/shared/aws/provision"
	"github.com/pgfleet/pgfleet/shared/local/lambdart"
	"github.com/pgfleet/pgfleet/shared/local/moto"
)

// TestBootstrapAgainstRuntimeAPI runs the real walprune bootstrap the way Lambda does, against AWS
// APIs served by moto_server: a bad event, an unknown cluster, a keepFrom that is not a WAL name
// and a cluster without any completed snapshot set each get a clear error (the last after reading
// the configuration from SSM Parameter Store, taking the lease and listing EC2 snapshots); then a
// second cluster configured on the same archive gets the run refused.
func TestBootstrapAgainstRuntimeAPI(t *testing.T) {
	srv := moto.StartForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg, err := moto.Config(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := provision.EnsureLeaseTable(ctx, cfg, "pgfleet-leases"); err != nil {
		t.Fatal(err)
	}
	if err := provision.EnsureBucket(ctx, cfg, "wal"); err != nil {
		t.Fatal(err)
	}
	doc := `{"name":"main","members":{"tags":{"pgfleet:cluster":"main"}},"postgres":{"version":"15","pgdata":"/var/lib/postgresql/15/main"},"volumes":{"mounts":["/var/lib/postgresql"]},"retention":{"keepLast":3},"archive":{"layout":"pgbackrest","bucket":"wal","prefix":"/wal-archive/main","stanza":"main"}}`
	if _, err := ssm.NewFromConfig(cfg).PutParameter(ctx, &ssm.PutParameterInput{
		Name: aws.String("/pgfleet/clusters/main"), Value: aws.String(doc), Type: ssmtypes.ParameterTypeSecureString,
	}); err != nil {
		t.Fatal(err)
	}

	rt, out := lambdart.Run(t, ".", append(lambdart.MotoEnv(srv.URL), "PGFLEET_LEASE_TABLE=pgfleet-leases")...)

	tests := []struct {
		name, event, want string
	}{
		{name: "typo in the schedule input", event: `{"clustr":"main"}`, want: "unknown field"},
		{name: "unknown cluster", event: `{"cluster":"nosuch"}`, want: "unknown cluster"},
		{name: "keepFrom is not a WAL name", event: `{"cluster":"main","keepFrom":"yesterday"}`, want: "keepFrom"},
		{name: "no completed set", event: `{"detail-type":"Scheduled Event","source":"aws.events","detail":{"cluster":"main"}}`, want: "no completed snapshot set"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := rt.Invoke(ctx, []byte(tc.event))
			if err != nil {
				t.Fatalf("%v; output:\n%s", err, out)
			}
			if !a.Error || !strings.Contains(a.Body, tc.want) {
				t.Fatalf("want an error mentioning %q, got %+v", tc.want, a)
			}
		})
	}

	// A second cluster whose configuration points at the same archive: the pruner lists the
	// clusters under the parameter prefix and refuses before it reads any snapshot.
	t.Run("another cluster shares the archive", func(t *testing.T) {
		copyDoc := strings.Replace(doc, `"name":"main"`, `"name":"copy"`, 1)
		if _, err := ssm.NewFromConfig(cfg).PutParameter(ctx, &ssm.PutParameterInput{
			Name: aws.String("/pgfleet/clusters/copy"), Value: aws.String(copyDoc), Type: ssmtypes.ParameterTypeSecureString,
		}); err != nil {
			t.Fatal(err)
		}
		a, err := rt.Invoke(ctx, []byte(`{"cluster":"main"}`))
		if err != nil {
			t.Fatalf("%v; output:\n%s", err, out)
		}
		if !a.Error || !strings.Contains(a.Body, "archive shared with another cluster") || !strings.Contains(a.Body, "copy") {
			t.Fatalf("want a refusal naming cluster copy, got %+v", a)
		}
	})
	for _, p := range lambdart.LogProblems(rt.Stderr.String()) {
		t.Error(p)
	}
}
