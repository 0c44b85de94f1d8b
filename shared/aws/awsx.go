// Package awsx holds what the AWS adapters share: loading the SDK configuration for a Lambda
// function and classifying API errors. The adapters themselves live in the sub-packages ec2x
// (members, snapshots), ssmx (host scripts over Run Command), ddblease (the run lease) and
// paramstore (cluster configuration); they are the only packages that import service clients.
package awsx

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go"
)

// LoadConfig loads the SDK's default configuration (the Lambda role's credentials and region).
// The SDK itself honours AWS_ENDPOINT_URL, which points every client at moto_server locally.
func LoadConfig(ctx context.Context, optFns ...func(*config.LoadOptions) error) (aws.Config, error) {
	cfg, err := config.LoadDefaultConfig(ctx, optFns...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load aws configuration: %w", err)
	}
	return cfg, nil
}

// ErrorCode returns the API error code inside err ("InvalidSnapshot.NotFound"), or "" when err
// is not an API error.
func ErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// IsCode reports whether err carries one of the API error codes.
func IsCode(err error, codes ...string) bool {
	code := ErrorCode(err)
	if code == "" {
		return false
	}
	for _, c := range codes {
		if code == c {
			return true
		}
	}
	return false
}
