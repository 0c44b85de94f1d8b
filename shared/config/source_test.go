package config_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pgfleet/pgfleet/shared/config"
)

func TestDirSourceLoad(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "main.json", doc())
	writeFile(t, dir, "other.json", doc(set("name", "renamed")))
	writeFile(t, dir, "broken.json", doc(set("watchdogSeconds", 1000)))
	// A valid document outside the directory that a path in the name would reach.
	parent := filepath.Dir(dir)
	writeFile(t, parent, "x.json", doc(set("name", "x")))

	tests := []struct {
		name        string
		cluster     string
		wantName    string
		wantUnknown bool
		want        []string
	}{
		{name: "present", cluster: "main", wantName: "main"},
		{name: "no file", cluster: "nope", wantUnknown: true, want: []string{`"nope"`, "nope.json"}},
		{name: "name differs from the file name", cluster: "other", want: []string{"other.json", `"renamed"`, `"other"`}},
		{name: "invalid document names the file and the field", cluster: "broken", want: []string{"broken.json", "watchdogSeconds"}},
		{name: "path traversal", cluster: "../x", wantUnknown: true, want: []string{"not a valid cluster name"}},
		{name: "absolute path", cluster: "/etc/passwd", wantUnknown: true, want: []string{"not a valid cluster name"}},
		{name: "empty", cluster: "", wantUnknown: true},
	}
	src := config.DirSource{Dir: dir}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := src.Load(context.Background(), tc.cluster)
			if tc.wantName != "" {
				if err != nil || c.Name != tc.wantName {
					t.Fatalf("got %q, %v; want cluster %q", c.Name, err, tc.wantName)
				}
				return
			}
			if err == nil {
				t.Fatalf("loaded %+v", c)
			}
			if got := errors.Is(err, config.ErrUnknownCluster); got != tc.wantUnknown {
				t.Errorf("errors.Is(err, ErrUnknownCluster) = %v, want %v: %v", got, tc.wantUnknown, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q: %v", w, err)
				}
			}
		})
	}
}

func writeFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDirSourceList(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"main.json", "other.json", "broken.json", "Upper.json", "notes.txt", ".hidden.json", "x.json.bak"} {
		writeFile(t, dir, name, doc())
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	var src config.Source = config.DirSource{Dir: dir}
	lister, ok := src.(config.Lister)
	if !ok {
		t.Fatal("DirSource does not implement config.Lister")
	}
	got, err := lister.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Every name Load could be asked for, sorted; files that cannot hold a cluster are left out.
	if want := []string{"broken", "main", "other"}; !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
	_, err = config.DirSource{Dir: filepath.Join(dir, "missing")}.List(context.Background())
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("List of a missing directory: %v, want an error naming it", err)
	}
}
