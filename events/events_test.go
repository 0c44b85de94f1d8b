package events

import (
	"errors"
	"os"
	"testing"
)

func TestDecodeScheduled(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    string
		wantErr bool
	}{
		{name: "bare constant input", raw: `{"cluster":"main"}`, want: "main"},
		{name: "envelope with detail", raw: `{"version":"0","detail-type":"Scheduled Event","source":"aws.events","detail":{"cluster":"db2"}}`, want: "db2"},
		{name: "envelope with empty detail", raw: `{"detail-type":"Scheduled Event","source":"aws.events","detail":{}}`, wantErr: true},
		{name: "unknown field is a typo", raw: `{"clustr":"main"}`, wantErr: true},
		{name: "not an object", raw: `["main"]`, wantErr: true},
		{name: "empty", raw: ``, wantErr: true},
		{name: "broken JSON", raw: `{"cluster":`, wantErr: true},
		{name: "trailing data", raw: `{"cluster":"main"} {}`, wantErr: true},
		{name: "wrong type", raw: `{"cluster":5}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var req clusterRequest
			err := DecodeScheduled([]byte(tc.raw), &req)
			if tc.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("want ErrMalformed, got %v (req %+v)", err, req)
				}
				return
			}
			if err != nil || req.Cluster != tc.want {
				t.Fatalf("got %+v, %v; want cluster %q", req, err, tc.want)
			}
		})
	}
}

func TestSampleEventFiles(t *testing.T) {
	tests := []struct {
		file    string
		want    string
		wantErr bool
	}{
		{file: "backup-constant-input.json", want: "main"},
		{file: "backup-scheduled-event.json", want: "main"},
		{file: "backup-empty-detail.json", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			var req clusterRequest
			err = DecodeScheduled(raw, &req)
			if (err != nil) != tc.wantErr || req.Cluster != tc.want {
				t.Fatalf("got %+v, %v", req, err)
			}
		})
	}
}

// clusterRequest has the shape of a job's request (backup.Request): the payload decoded here.
type clusterRequest struct {
	Cluster string `json:"cluster"`
}
