// Package ddblease implements fleet.Lease with one DynamoDB item per lease key: a conditional
// put takes the lease when it is free, expired or already ours; a conditional delete gives it
// up only while it is still ours. The table's partition key is "pk" (string); its TTL attribute
// is "ttl", so DynamoDB sweeps expired leases on its own.
package ddblease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	awsx "github.com/pgfleet/pgfleet/shared/aws"
	"github.com/pgfleet/pgfleet/shared/fleet"
	"github.com/pgfleet/pgfleet/shared/logctx"
)

// API is the part of DynamoDB the Lease calls.
type API interface {
	PutItem(ctx context.Context, params *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	DeleteItem(ctx context.Context, params *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

var (
	_ API         = (*dynamodb.Client)(nil)
	_ fleet.Lease = (*Lease)(nil)
)

// Attribute names of a lease item.
const (
	AttrKey       = "pk"
	AttrOwner     = "owner"
	AttrExpiresAt = "expiresAt" // epoch seconds
	AttrTTL       = "ttl"       // epoch seconds, the table's TTL attribute
)

const conditionalCheckFailed = "ConditionalCheckFailedException"

// Lease is a DynamoDB-backed fleet.Lease.
type Lease struct {
	api   API
	table string
	// Now is the clock (tests move it instead of sleeping).
	Now func() time.Time
	// Log receives the releases that found the lease no longer ours, when the context carries no
	// logger of its own (logctx).
	Log *slog.Logger
}

// New returns a Lease on table.
func New(api API, table string) *Lease {
	return &Lease{api: api, table: table, Now: time.Now, Log: slog.Default()}
}

// item is a lease as stored.
type item struct {
	Key       string `dynamodbav:"pk"`
	Owner     string `dynamodbav:"owner"`
	ExpiresAt int64  `dynamodbav:"expiresAt"`
}

// Acquire implements fleet.Lease. Expiry is kept in whole seconds, rounded up, so a lease is
// held at least ttl; it counts as expired once the clock is past that second.
func (l *Lease) Acquire(ctx context.Context, key, owner string, ttl time.Duration) error {
	if key == "" || owner == "" {
		return errors.New("acquire lease: empty key or owner")
	}
	if ttl <= 0 {
		return fmt.Errorf("acquire lease %s: ttl %s must be positive", key, ttl)
	}
	now := l.now()
	expires := int64(math.Ceil(float64(now.Add(ttl).UnixNano()) / 1e9))
	exp := &types.AttributeValueMemberN{Value: strconv.FormatInt(expires, 10)}
	_, err := l.api.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(l.table),
		Item: map[string]types.AttributeValue{
			AttrKey:       &types.AttributeValueMemberS{Value: key},
			AttrOwner:     &types.AttributeValueMemberS{Value: owner},
			AttrExpiresAt: exp,
			AttrTTL:       exp,
		},
		ConditionExpression:      aws.String("attribute_not_exists(#pk) OR #exp < :now OR #owner = :owner"),
		ExpressionAttributeNames: map[string]string{"#pk": AttrKey, "#exp": AttrExpiresAt, "#owner": AttrOwner},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":now":   &types.AttributeValueMemberN{Value: strconv.FormatInt(now.Unix(), 10)},
			":owner": &types.AttributeValueMemberS{Value: owner},
		},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	if awsx.IsCode(err, conditionalCheckFailed) {
		if h, ok := holder(err); ok {
			return fmt.Errorf("lease %s: %w: held by %s until %s", key, fleet.ErrLeaseHeld, h.Owner, time.Unix(h.ExpiresAt, 0).UTC().Format(time.RFC3339))
		}
		return fmt.Errorf("lease %s: %w", key, fleet.ErrLeaseHeld)
	}
	if err != nil {
		return fmt.Errorf("acquire lease %s in table %s: %w", key, l.table, err)
	}
	return nil
}

// holder reads the current lease from a failed conditional put (ALL_OLD on failure).
func holder(err error) (item, bool) {
	var ccf *types.ConditionalCheckFailedException
	if !errors.As(err, &ccf) || len(ccf.Item) == 0 {
		return item{}, false
	}
	var it item
	if attributevalue.UnmarshalMap(ccf.Item, &it) != nil || it.Owner == "" {
		return item{}, false
	}
	return it, true
}

// Release implements fleet.Lease. A lease that is no longer ours (it expired and another run
// took it, or it is gone) is left alone and is not an error.
func (l *Lease) Release(ctx context.Context, key, owner string) error {
	_, err := l.api.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                 aws.String(l.table),
		Key:                       map[string]types.AttributeValue{AttrKey: &types.AttributeValueMemberS{Value: key}},
		ConditionExpression:       aws.String("#owner = :owner"),
		ExpressionAttributeNames:  map[string]string{"#owner": AttrOwner},
		ExpressionAttributeValues: map[string]types.AttributeValue{":owner": &types.AttributeValueMemberS{Value: owner}},
	})
	if awsx.IsCode(err, conditionalCheckFailed) {
		l.log(ctx).Warn("lease was no longer ours at release; left alone", "lease", key, "owner", owner)
		return nil
	}
	if err != nil {
		return fmt.Errorf("release lease %s in table %s: %w", key, l.table, err)
	}
	return nil
}

func (l *Lease) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// log is the run's logger from ctx (cluster, request id, step), else Log, else slog's default.
func (l *Lease) log(ctx context.Context) *slog.Logger { return logctx.From(ctx, l.Log) }
