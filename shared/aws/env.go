package awsx

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Env is the environment every pgfleet function reads at init, and only there.
type Env struct {
	// ConfigPrefix is the SSM parameter path holding one document per cluster.
	ConfigPrefix string
	// DocumentPrefix names the SSM Command documents of the host scripts (prefix + script).
	DocumentPrefix string
	// LeaseTable is the DynamoDB lease table.
	LeaseTable string
}

// FunctionEnv reads PGFLEET_CONFIG_PREFIX, PGFLEET_SSM_DOCUMENT_PREFIX and PGFLEET_LEASE_TABLE,
// with defaults for the first two.
func FunctionEnv() Env {
	e := Env{
		ConfigPrefix:   strings.TrimSuffix(os.Getenv("PGFLEET_CONFIG_PREFIX"), "/"),
		DocumentPrefix: os.Getenv("PGFLEET_SSM_DOCUMENT_PREFIX"),
		LeaseTable:     os.Getenv("PGFLEET_LEASE_TABLE"),
	}
	if e.ConfigPrefix == "" {
		e.ConfigPrefix = "/pgfleet/clusters"
	}
	if e.DocumentPrefix == "" {
		e.DocumentPrefix = "pgfleet-"
	}
	return e
}

// Validate says what is missing.
func (e Env) Validate() error {
	if e.LeaseTable == "" {
		return errors.New("PGFLEET_LEASE_TABLE is not set: name the DynamoDB lease table")
	}
	if !strings.HasPrefix(e.ConfigPrefix, "/") {
		return errors.New("PGFLEET_CONFIG_PREFIX must start with /")
	}
	return nil
}

// Init is what every function's main does first: read and check the environment, load the SDK
// configuration. Both happen once, at init, never per invocation.
func Init(ctx context.Context) (aws.Config, Env, error) {
	env := FunctionEnv()
	if err := env.Validate(); err != nil {
		return aws.Config{}, env, fmt.Errorf("bad function environment: %w", err)
	}
	cfg, err := LoadConfig(ctx)
	if err != nil {
		return aws.Config{}, env, err
	}
	return cfg, env, nil
}
