package metrics

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

func TestEMFLineIsValidEmbeddedMetricFormat(t *testing.T) {
	var buf bytes.Buffer
	e := NewEMF(&buf)
	e.now = func() time.Time { return time.UnixMilli(1700000000123) }
	e.Put(map[string]string{"Cluster": "main"}, Value{"WritesBlockedMs", Milliseconds, 12.5}, Value{"SetVolumes", Count, 2})
	var doc struct {
		AWS struct {
			Timestamp         int64
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		} `json:"_aws"`
		Cluster         string
		WritesBlockedMs float64
		SetVolumes      float64
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("not JSON: %v: %s", err, buf.String())
	}
	if bytes.Count(buf.Bytes(), []byte("\n")) != 1 {
		t.Fatalf("want exactly one line, got %q", buf.String())
	}
	cw := doc.AWS.CloudWatchMetrics
	if doc.AWS.Timestamp != 1700000000123 || len(cw) != 1 || cw[0].Namespace != Namespace {
		t.Fatalf("bad _aws block: %+v", doc.AWS)
	}
	if len(cw[0].Dimensions) != 1 || len(cw[0].Dimensions[0]) != 1 || cw[0].Dimensions[0][0] != "Cluster" {
		t.Fatalf("bad dimensions: %+v", cw[0].Dimensions)
	}
	if len(cw[0].Metrics) != 2 || cw[0].Metrics[0].Unit != Milliseconds {
		t.Fatalf("bad metric definitions: %+v", cw[0].Metrics)
	}
	if doc.Cluster != "main" || doc.WritesBlockedMs != 12.5 || doc.SetVolumes != 2 {
		t.Fatalf("bad values: %+v", doc)
	}
}

func TestEMFPutWithoutValuesWritesNothing(t *testing.T) {
	var buf bytes.Buffer
	NewEMF(&buf).Put(map[string]string{"Cluster": "main"})
	if buf.Len() != 0 {
		t.Fatalf("wrote %q", buf.String())
	}
}
