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

// TestBootstrapAgainstRuntimeAPI runs the real bootstrap binary the way Lambda does, against AWS
// APIs served by moto_server: it reads its environment once, answers a bad event with a clear
// error, an unknown cluster with "unknown cluster", and a cluster with no instances with "no
// usable member" (after reading its configuration from SSM Parameter Store and taking the
// DynamoDB lease), and keeps serving invocations.
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
	doc := `{"name":"main","members":{"tags":{"pgfleet:cluster":"main"}},"postgres":{"version":"15","pgdata":"/var/lib/postgresql/15/main"},"volumes":{"mounts":["/var/lib/postgresql"]},"retention":{"keepLast":3}}`
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
		{name: "no instances", event: `{"detail-type":"Scheduled Event","source":"aws.events","detail":{"cluster":"main"}}`, want: "no usable member"},
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
}
