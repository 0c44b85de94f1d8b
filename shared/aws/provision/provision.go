// Package provision creates the AWS resources a local site (or a test) needs before pgfleet runs:
// the WAL archive bucket, the lease table and the secrets a user keeps in Parameter Store. In AWS
// the CDK stack owns the bucket and the table, and the user puts the secrets there.
package provision

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/pgfleet/pgfleet/shared/aws/ddblease"
	"github.com/pgfleet/pgfleet/shared/aws/s3archive"
)

// EnsureBucket creates an S3 bucket unless it exists.
func EnsureBucket(ctx context.Context, cfg aws.Config, bucket string) error {
	client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	_, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	var owned *s3types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	return nil
}

// EnsureLeaseTable creates the lease table (partition key "pk") unless it exists.
func EnsureLeaseTable(ctx context.Context, cfg aws.Config, table string) error {
	client := dynamodb.NewFromConfig(cfg)
	_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	})
	var inUse *ddbtypes.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("create lease table %s: %w", table, err)
	}
	return nil
}

// Lease returns the DynamoDB lease on table.
func Lease(cfg aws.Config, table string) *ddblease.Lease {
	return ddblease.New(dynamodb.NewFromConfig(cfg), table)
}

// Archive returns the S3 WAL archive adapter with path-style addressing (what moto and most
// S3-compatible endpoints expect).
func Archive(cfg aws.Config) *s3archive.Archive {
	return s3archive.New(s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }))
}

// PutSecret stores value as a SecureString parameter (replacing any earlier value), the way a
// user keeps a password for the hosts to fetch. Errors name the parameter, never the value.
func PutSecret(ctx context.Context, cfg aws.Config, name, value string) error {
	_, err := ssm.NewFromConfig(cfg).PutParameter(ctx, &ssm.PutParameterInput{
		Name:      aws.String(name),
		Value:     aws.String(value),
		Type:      ssmtypes.ParameterTypeSecureString,
		Overwrite: aws.Bool(true),
	})
	if err != nil {
		return fmt.Errorf("put SecureString parameter %s: %w", name, err)
	}
	return nil
}

// GetSecret reads and decrypts a SecureString parameter, as a host does with its instance role.
func GetSecret(ctx context.Context, cfg aws.Config, name string) (string, error) {
	out, err := ssm.NewFromConfig(cfg).GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name), WithDecryption: aws.Bool(true)})
	if err != nil {
		return "", fmt.Errorf("get SecureString parameter %s: %w", name, err)
	}
	if out.Parameter == nil || aws.ToString(out.Parameter.Value) == "" {
		return "", fmt.Errorf("SecureString parameter %s has no value", name)
	}
	if out.Parameter.Type != ssmtypes.ParameterTypeSecureString {
		return "", fmt.Errorf("parameter %s is a %s, not a SecureString: a secret must be encrypted at rest", name, out.Parameter.Type)
	}
	return aws.ToString(out.Parameter.Value), nil
}
