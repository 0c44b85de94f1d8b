package paramstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/pgfleet/pgfleet/shared/aws/paramstore"
	"github.com/pgfleet/pgfleet/shared/config"
	"github.com/pgfleet/pgfleet/shared/local/moto"
)

const mainDoc = `{
  "name": "main",
  "members": {"tags": {"pgfleet:cluster": "main"}},
  "postgres": {"version": "15", "pgdata": "/data/pg/15/main"},
  "volumes": {"mounts": ["/data/pg", "/data/wal"]},
  "retention": {"keepLast": 3}
}`

func TestLoad(t *testing.T) {
	srv := moto.StartForTest(t)
	ctx := context.Background()
	cfg, err := moto.Config(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	client := ssm.NewFromConfig(cfg)
	put := func(name, value string) {
		t.Helper()
		if _, err := client.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String(value), Type: types.ParameterTypeSecureString}); err != nil {
			t.Fatalf("put %s: %v", name, err)
		}
	}
	put("/pgfleet/clusters/main", mainDoc)
	put("/pgfleet/clusters/broken", `{"name": "broken", "members": `)
	put("/pgfleet/clusters/other", strings.Replace(mainDoc, `"name": "main"`, `"name": "elsewhere"`, 1))
	src := paramstore.New(client, "/pgfleet/clusters/") // trailing slash tolerated

	t.Run("found", func(t *testing.T) {
		c, err := src.Load(ctx, "main")
		if err != nil {
			t.Fatal(err)
		}
		if c.Name != "main" || c.Postgres.PGData != "/data/pg/15/main" || c.Retention.KeepLast != 3 || len(c.Volumes.Mounts) != 2 {
			t.Fatalf("loaded %+v", c)
		}
		if c.Members.RoleTag != config.DefaultRoleTag || c.Postgres.Port != 5432 {
			t.Fatalf("defaults not applied: %+v", c)
		}
	})
	t.Run("missing parameter is an unknown cluster", func(t *testing.T) {
		_, err := src.Load(ctx, "nope")
		if !errors.Is(err, config.ErrUnknownCluster) || !strings.Contains(err.Error(), "/pgfleet/clusters/nope") {
			t.Fatalf("err = %v, want ErrUnknownCluster naming /pgfleet/clusters/nope", err)
		}
	})
	t.Run("invalid name is an unknown cluster and reads nothing", func(t *testing.T) {
		_, err := src.Load(ctx, "../main")
		if !errors.Is(err, config.ErrUnknownCluster) {
			t.Fatalf("err = %v, want ErrUnknownCluster", err)
		}
	})
	t.Run("invalid document names the parameter", func(t *testing.T) {
		_, err := src.Load(ctx, "broken")
		if err == nil || errors.Is(err, config.ErrUnknownCluster) || !strings.Contains(err.Error(), "/pgfleet/clusters/broken") {
			t.Fatalf("err = %v, want a parse error naming /pgfleet/clusters/broken", err)
		}
	})
	t.Run("name mismatch", func(t *testing.T) {
		_, err := src.Load(ctx, "other")
		if err == nil || !strings.Contains(err.Error(), `"elsewhere"`) || !strings.Contains(err.Error(), "/pgfleet/clusters/other") {
			t.Fatalf("err = %v, want a name mismatch error", err)
		}
	})
}

func TestList(t *testing.T) {
	srv := moto.StartForTest(t)
	ctx := context.Background()
	cfg, err := moto.Config(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	client := ssm.NewFromConfig(cfg)
	// More parameters than one GetParametersByPath page (10), a nested one, a neighbouring
	// prefix and a name that cannot be a cluster.
	var want []string
	for i := 0; i < 12; i++ {
		name := fmt.Sprintf("c%02d", i)
		want = append(want, name)
		putParam(ctx, t, client, "/pgfleet/clusters/"+name, mainDoc)
	}
	putParam(ctx, t, client, "/pgfleet/clusters/nested/deeper", mainDoc)
	putParam(ctx, t, client, "/pgfleet/clusters-old/main", mainDoc)
	putParam(ctx, t, client, "/pgfleet/clusters/Not_A_Cluster", mainDoc)

	var src config.Source = paramstore.New(client, "/pgfleet/clusters/")
	lister, ok := src.(config.Lister)
	if !ok {
		t.Fatal("paramstore.Source does not implement config.Lister")
	}
	got, err := lister.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
	if got, err := paramstore.New(client, "/nothing/here").List(ctx); err != nil || len(got) != 0 {
		t.Fatalf("List of an empty prefix = %q, %v", got, err)
	}
}

func putParam(ctx context.Context, t *testing.T, client *ssm.Client, name, value string) {
	t.Helper()
	if _, err := client.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String(value), Type: types.ParameterTypeSecureString}); err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
}
