// Command backup is the scheduled backup Lambda: wiring only. Clients are built once at init;
// the orchestration lives in shared/backup.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	awsx "github.com/pgfleet/pgfleet/shared/aws"
	"github.com/pgfleet/pgfleet/shared/aws/ddblease"
	"github.com/pgfleet/pgfleet/shared/aws/ec2x"
	"github.com/pgfleet/pgfleet/shared/aws/paramstore"
	"github.com/pgfleet/pgfleet/shared/aws/ssmx"
	"github.com/pgfleet/pgfleet/shared/backup"
	"github.com/pgfleet/pgfleet/shared/metrics"
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
	ec2Client := ec2.NewFromConfig(cfg)
	ssmClient := ssm.NewFromConfig(cfg)
	job := &backup.Backup{
		Configs:   paramstore.New(ssmClient, env.ConfigPrefix),
		Members:   ec2x.NewFinder(ec2Client),
		Hosts:     ssmx.NewRunner(ssmClient, env.DocumentPrefix),
		Snapshots: ec2x.NewSnapshots(ec2Client),
		Lease:     ddblease.New(dynamodb.NewFromConfig(cfg), env.LeaseTable),
		Metrics:   metrics.NewEMF(os.Stdout),
		Log:       log,
	}
	lambda.Start(job.Handle)
}
