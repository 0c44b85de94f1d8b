package walprune_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/pgfleet/pgfleet/events"
	"github.com/pgfleet/pgfleet/shared/walprune"
)

// TestSampleEvents decodes every events/walprune-*.json sample and runs it through Handle.
func TestSampleEvents(t *testing.T) {
	tests := map[string]struct {
		want   walprune.Request
		status string
	}{
		"walprune-constant-input.json":  {want: walprune.Request{Cluster: "main"}, status: walprune.StatusCompleted},
		"walprune-dry-run.json":         {want: walprune.Request{Cluster: "main", DryRun: true}, status: walprune.StatusPlanned},
		"walprune-keep-from.json":       {want: walprune.Request{Cluster: "main", KeepFrom: "000000010000000A00000010"}, status: walprune.StatusCompleted},
		"walprune-scheduled-event.json": {want: walprune.Request{Cluster: "main", MaxDeletes: 50000}, status: walprune.StatusCompleted},
	}
	files, err := filepath.Glob(filepath.Join("..", "..", "events", "walprune-*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(tests) {
		t.Fatalf("sample files %q, want exactly %d", files, len(tests))
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			tc, ok := tests[name]
			if !ok {
				t.Fatalf("no expectation for %s", name)
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var req walprune.Request
			if err := events.DecodeScheduled(raw, &req); err != nil || req != tc.want {
				t.Fatalf("decoded %+v, %v; want %+v", req, err, tc.want)
			}
			h := newHarness(t)
			res, err := h.p.Handle(context.Background(), json.RawMessage(raw))
			if err != nil || res.Status != tc.status || res.KeepFrom != tc.want.KeepFrom {
				t.Fatalf("Handle: %s, %v", summary(res), err)
			}
		})
	}
}
