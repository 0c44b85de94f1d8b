package moto

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Region is the region every moto client uses.
const Region = "us-east-1"

// Config returns an aws.Config for the moto server at url: static "test" credentials, Region,
// BaseEndpoint url, no shared config files (a developer's ~/.aws must not leak in) and one
// attempt per call, so a moto 500 shows at once instead of after retries. optFns come last and
// override any of it, e.g. config.WithRetryMaxAttempts(3) or config.WithAPIOptions(...).
// S3 clients also need UsePathStyle = true.
func Config(ctx context.Context, url string, optFns ...func(*config.LoadOptions) error) (aws.Config, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(Region),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("test", "test", "")),
		config.WithBaseEndpoint(url),
		config.WithRetryMaxAttempts(1),
		config.WithSharedConfigFiles([]string{}),
		config.WithSharedCredentialsFiles([]string{}),
	}
	cfg, err := config.LoadDefaultConfig(ctx, append(opts, optFns...)...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("aws config for moto at %s: %w", url, err)
	}
	return cfg, nil
}
