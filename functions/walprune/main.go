// Command walprune is the scheduled WAL prune Lambda: wiring only. Clients are built once at
// init; the logic lives in shared/walprune and shared/wal.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	awsx "github.com/pgfleet/pgfleet/shared/aws"
	"github.com/pgfleet/pgfleet/shared/aws/ddblease"
	"github.com/pgfleet/pgfleet/shared/aws/ec2x"
	"github.com/pgfleet/pgfleet/shared/aws/paramstore"
	"github.com/pgfleet/pgfleet/shared/aws/s3archive"
	"github.com/pgfleet/pgfleet/shared/metrics"
	"github.com/pgfleet/pgfleet/shared/walprune"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	// The backstop for any line logged without the run's logger: JSON, never Go's text format.
	slog.SetDefault(log)
	cfg, env, err := awsx.Init(context.Background())
	if err != nil {
		log.Error("init", "error", err.Error())
		os.Exit(1)
	}
	job := &walprune.Pruner{
		Configs:   paramstore.New(ssm.NewFromConfig(cfg), env.ConfigPrefix),
		Snapshots: ec2x.NewSnapshots(ec2.NewFromConfig(cfg)),
		Archive:   s3archive.New(s3.NewFromConfig(cfg)),
		Lease:     ddblease.New(dynamodb.NewFromConfig(cfg), env.LeaseTable),
		Metrics:   metrics.NewEMF(os.Stdout),
		Log:       log,
	}
	lambda.Start(job.Handle)
}
