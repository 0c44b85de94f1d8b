package moto

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go/middleware"
)

// Region is the region every moto client uses.
const Region = "us-east-1"

// Config returns an aws.Config for the moto server at url: static "test" credentials, Region,
// BaseEndpoint url, no shared config files (a developer's ~/.aws must not leak in) and one
// attempt per call, so a moto 500 shows at once instead of after retries. With one attempt a
// transport race that the SDK's retryer hides in AWS would fail a test, so every client also
// carries StableRequestBody. optFns come last and override any of it, e.g.
// config.WithRetryMaxAttempts(3); config.WithAPIOptions(...) adds to the API options.
// S3 clients also need UsePathStyle = true.
func Config(ctx context.Context, url string, optFns ...func(*config.LoadOptions) error) (aws.Config, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(Region),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("test", "test", "")),
		config.WithBaseEndpoint(url),
		config.WithRetryMaxAttempts(1),
		config.WithAPIOptions([]func(*middleware.Stack) error{StableRequestBody}),
		config.WithSharedConfigFiles([]string{}),
		config.WithSharedCredentialsFiles([]string{}),
	}
	cfg, err := config.LoadDefaultConfig(ctx, append(opts, optFns...)...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("aws config for moto at %s: %w", url, err)
	}
	return cfg, nil
}
