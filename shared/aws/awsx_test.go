package awsx_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go"

	awsx "github.com/pgfleet/pgfleet/shared/aws"
)

func TestErrorCode(t *testing.T) {
	api := fmt.Errorf("delete snapshot snap-1: %w", &smithy.GenericAPIError{Code: "InvalidSnapshot.NotFound"})
	cases := []struct {
		name  string
		err   error
		code  string
		codes []string
		is    bool
	}{
		{"wrapped api error", api, "InvalidSnapshot.NotFound", []string{"Other", "InvalidSnapshot.NotFound"}, true},
		{"other code", api, "InvalidSnapshot.NotFound", []string{"InvalidSnapshot.InUse"}, false},
		{"not an api error", errors.New("InvalidSnapshot.NotFound"), "", []string{"InvalidSnapshot.NotFound"}, false},
		{"nil", nil, "", []string{""}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := awsx.ErrorCode(tc.err); got != tc.code {
				t.Fatalf("ErrorCode = %q, want %q", got, tc.code)
			}
			if got := awsx.IsCode(tc.err, tc.codes...); got != tc.is {
				t.Fatalf("IsCode = %v, want %v", got, tc.is)
			}
		})
	}
}

// LoadConfig leaves endpoint selection to the SDK, which reads AWS_ENDPOINT_URL.
func TestLoadConfigHonoursEndpointURL(t *testing.T) {
	t.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	cfg, err := awsx.LoadConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(cfg.BaseEndpoint) != "http://127.0.0.1:5000" || cfg.Region != "eu-west-1" {
		t.Fatalf("base endpoint %q, region %q", aws.ToString(cfg.BaseEndpoint), cfg.Region)
	}
}
