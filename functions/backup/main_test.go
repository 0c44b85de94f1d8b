package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
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
		setup             func(t *testing.T)
	}{
		{name: "typo in the schedule input", event: `{"clustr":"main"}`, want: "unknown field"},
		{name: "unknown cluster", event: `{"cluster":"nosuch"}`, want: "unknown cluster"},
		{name: "no instances", event: `{"detail-type":"Scheduled Event","source":"aws.events","detail":{"cluster":"main"}}`, want: "no usable member"},
		{
			// moto runs no script: the freeze reports nothing, so the run thaws (4 attempts,
			// each also answering nothing) and fails. Its SSM and lease lines are the adapters'.
			name: "an instance whose commands print nothing", event: `{"cluster":"main"}`, want: "no JSON result line",
			setup: func(t *testing.T) {
				_, err := ec2.NewFromConfig(cfg).RunInstances(ctx, &ec2.RunInstancesInput{
					ImageId: aws.String("ami-12c6146b"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
					BlockDeviceMappings: []ec2types.BlockDeviceMapping{{DeviceName: aws.String("/dev/sdf"), Ebs: &ec2types.EbsBlockDevice{VolumeSize: aws.Int32(1)}}},
					TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance,
						Tags: []ec2types.Tag{{Key: aws.String("pgfleet:cluster"), Value: aws.String("main")}, {Key: aws.String("pgfleet:role"), Value: aws.String("primary")}}}},
				})
				if err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup(t)
			}
			a, err := rt.Invoke(ctx, []byte(tc.event))
			if err != nil {
				t.Fatalf("%v; output:\n%s", err, out)
			}
			if !a.Error || !strings.Contains(a.Body, tc.want) {
				t.Fatalf("want an error mentioning %q, got %+v", tc.want, a)
			}
		})
	}
	assertLogsCarryTheRun(t, rt.Stderr.String())
}

// assertLogsCarryTheRun: every line the function wrote to stderr, its adapters' included, is
// JSON and says which cluster and request it belongs to; the SSM runner's lines name their step.
func assertLogsCarryTheRun(t *testing.T, stderr string) {
	t.Helper()
	for _, p := range lambdart.LogProblems(stderr) {
		t.Error(p)
	}
	hostLines := 0
	for _, l := range strings.Split(stderr, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) != nil || rec["msg"] != "host command finished" {
			continue
		}
		hostLines++
		if rec["cluster"] != "main" || rec["step"] == nil || rec["request_id"] == "" {
			t.Errorf("the SSM runner's line lacks the run's context: %s", l)
		}
	}
	if hostLines == 0 {
		t.Errorf("no line of the SSM runner in:\n%s", stderr)
	}
}
