package logctx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/pgfleet/pgfleet/shared/logctx"
)

func TestStepLinesCarryTheRunsContext(t *testing.T) {
	var buf bytes.Buffer
	run := slog.New(slog.NewJSONHandler(&buf, nil)).With("cluster", "main", "request_id", "req-1")
	ctx := logctx.With(context.Background(), run)
	sctx, _ := logctx.Step(ctx, "freeze")
	// An adapter, given only the context, logs with the run's attributes and the step.
	logctx.From(sctx, nil).Info("host command finished")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if line["cluster"] != "main" || line["request_id"] != "req-1" || line["step"] != "freeze" {
		t.Errorf("line %v", line)
	}
	fallback := slog.New(slog.NewJSONHandler(&buf, nil))
	if logctx.From(context.Background(), fallback) != fallback || logctx.From(context.Background(), nil) != slog.Default() {
		t.Error("From without a logger in the context does not fall back")
	}
}
