package wal

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/pgfleet/pgfleet/shared/testutil"
)

const pgArchiveCleanup = "/usr/lib/postgresql/15/bin/pg_archivecleanup"

// cleanupDirNames is a directory's worth of names around a log id change on three timelines, in
// every form pg_archivecleanup may meet, plus junk.
func cleanupDirNames(t testing.TB) []string {
	t.Helper()
	var names []string
	for tli := uint32(1); tli <= 3; tli++ {
		for n := uint64(0xFC); n <= 0x104; n++ {
			s := segName(t, tli, n)
			names = append(names,
				s, s+".gz", s+".bz2", s+".gz.gz", s+"-"+fakeSHA1(s)+".gz",
				s+".partial", s+".partial.gz", s+".partial.bz2",
				s+".00000028.backup", s+".00000028.backup.gz",
			)
			if lower := strings.ToLower(s); lower != s {
				names = append(names, lower, lower+".gz")
			}
		}
	}
	return append(names,
		"foo", "00000001000000000000000G", "000000010000000000000001.gz.tmp",
		"00000001000000000000001", "0000000100000000000000011", "000000000000000000000001",
		"00000002.history", "00000003.history", "00000003.history.gz", ".gz",
		"000000010000000100000000.gz.partial", "000000010000000100000000.28.backup",
		"000000010000000100000001.partial.partial",
	)
}

// runArchiveCleanup runs pg_archivecleanup -n and returns the names it would remove.
func runArchiveCleanup(t *testing.T, bin, dir, ext, restart string) ([]string, error) {
	t.Helper()
	args := []string{"-n"}
	if ext != "" {
		args = append(args, "-x", ext)
	}
	args = append(args, dir, restart)
	cmd := exec.Command(bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("pg_archivecleanup %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		name, ok := strings.CutPrefix(line, dir+"/")
		if !ok {
			t.Fatalf("unexpected pg_archivecleanup output line %q", line)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}

// planNames plans a plain archive with an empty prefix over names, the way pgfleet would prune
// the same files in a bucket.
func planNames(t *testing.T, names []string, ext, restart string) []string {
	t.Helper()
	l, err := NewLayout(LayoutPlain, LayoutOptions{Extension: ext})
	if err != nil {
		t.Fatal(err)
	}
	// pg_archivecleanup trims the -x extension from its restart argument too.
	if ext != "" && len(restart) > len(ext) {
		restart = strings.TrimSuffix(restart, ext)
	}
	b, err := ParseBoundaryName(restart)
	if err != nil {
		t.Fatal(err)
	}
	objs := make([]ObjectInfo, len(names))
	for i, n := range names {
		objs[i] = ObjectInfo{Key: n, Size: 1}
	}
	p, err := NewPlan(objs, l, b, Options{AllowBoundaryAhead: true})
	if err != nil {
		t.Fatal(err)
	}
	got := keysOf(p.Delete)
	sort.Strings(got)
	return got
}

func writeDir(t *testing.T, names []string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestMatchesPgArchiveCleanup(t *testing.T) {
	bin := testutil.RequireBinary(t, pgArchiveCleanup)
	names := cleanupDirNames(t)
	dir := writeDir(t, names)
	restarts := []string{
		"000000010000000000000001",
		"0000000200000000000000FC",
		"0000000200000000000000FE",
		"000000010000000100000000",
		"000000030000000100000000",
		"000000030000000100000002.partial",
		"000000020000000100000003.00000028.backup",
		"000000010000000100000004",
		"000000010000000100000010",
	}
	total, runs := 0, 0
	for _, ext := range []string{"", ".gz", ".bz2"} {
		cases := append([]string(nil), restarts...)
		if ext != "" {
			cases = append(cases, "0000000200000000000000FE"+ext, "000000030000000100000002.partial"+ext)
		}
		for _, restart := range cases {
			t.Run(fmt.Sprintf("x=%q/%s", ext, restart), func(t *testing.T) {
				want, err := runArchiveCleanup(t, bin, dir, ext, restart)
				if err != nil {
					t.Fatal(err)
				}
				got := planNames(t, names, ext, restart)
				if !sameNames(got, want) {
					t.Fatalf("pgfleet plans %d deletions, pg_archivecleanup %d\npgfleet only: %v\npg_archivecleanup only: %v",
						len(got), len(want), minus(got, want), minus(want, got))
				}
				total += len(want)
				runs++
			})
		}
	}
	if total < 100 {
		t.Fatalf("only %d deletions over all cases: the comparison does not exercise pg_archivecleanup", total)
	}
	t.Logf("pgfleet and pg_archivecleanup agree on %d deletions over %d runs on a directory of %d files", total, runs, len(names))
}

func TestMatchesPgArchiveCleanupRandom(t *testing.T) {
	bin := testutil.RequireBinary(t, pgArchiveCleanup)
	all := cleanupDirNames(t)
	rng := rand.New(rand.NewPCG(15, 18))
	for i := 0; i < 20; i++ {
		var names []string
		for _, n := range all {
			if rng.IntN(3) > 0 {
				names = append(names, n)
			}
		}
		ext := []string{"", ".gz", ".bz2"}[rng.IntN(3)]
		restart := segName(t, uint32(1+rng.IntN(3)), 0xFB+uint64(rng.IntN(12)))
		switch rng.IntN(3) {
		case 1:
			restart += ".partial"
		case 2:
			restart += ".00000028.backup"
		}
		t.Run(fmt.Sprintf("%02d/x=%q/%s", i, ext, restart), func(t *testing.T) {
			dir := writeDir(t, names)
			want, err := runArchiveCleanup(t, bin, dir, ext, restart)
			if err != nil {
				t.Fatal(err)
			}
			if got := planNames(t, names, ext, restart); !sameNames(got, want) {
				t.Fatalf("pgfleet only: %v\npg_archivecleanup only: %v", minus(got, want), minus(want, got))
			}
		})
	}
}

func TestRejectsRestartNamesLikePgArchiveCleanup(t *testing.T) {
	bin := testutil.RequireBinary(t, pgArchiveCleanup)
	dir := t.TempDir()
	tests := []struct {
		name    string
		restart string
	}{
		{name: "history", restart: "00000002.history"},
		{name: "junk", restart: "foo"},
		{name: "lower case", restart: "00000001000000000000000a"},
		{name: "compressed without -x", restart: "000000010000000000000001.gz"},
		{name: "short", restart: "00000001000000000000001"},
		{name: "partial typo", restart: "000000010000000000000001.partal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runArchiveCleanup(t, bin, dir, "", tt.restart)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(err.Error(), "invalid file name argument") {
				t.Fatalf("pg_archivecleanup accepted %q or failed otherwise: %v", tt.restart, err)
			}
			if _, err := ParseBoundaryName(tt.restart); err == nil {
				t.Fatalf("ParseBoundaryName accepted %q, which pg_archivecleanup refuses", tt.restart)
			}
		})
	}
}

// sameNames compares two sorted name lists, nil and empty alike.
func sameNames(a, b []string) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}

func minus(a, b []string) []string {
	in := map[string]bool{}
	for _, s := range b {
		in[s] = true
	}
	var out []string
	for _, s := range a {
		if !in[s] {
			out = append(out, s)
		}
	}
	return out
}
