package config_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pgfleet/pgfleet/shared/config"
	"github.com/pgfleet/pgfleet/shared/snapset"
)

func TestParseAppliesDefaults(t *testing.T) {
	c, err := config.Parse(doc())
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := config.Cluster{
		Name:           "main",
		Members:        config.Members{Tags: map[string]string{"pgfleet:cluster": "main"}, RoleTag: config.DefaultRoleTag},
		SnapshotSource: "replica",
		Postgres: config.Postgres{
			Version:   "15",
			PGData:    "/var/lib/postgresql/15/main",
			Port:      5432,
			BinDir:    "/usr/lib/postgresql/15/bin",
			OSUser:    "postgres",
			SocketDir: "/var/run/postgresql",
		},
		Volumes:         config.Volumes{Mounts: []string{"/var/lib/postgresql"}, Filesystem: "auto"},
		Consistency:     "freeze",
		WatchdogSeconds: config.DefaultWatchdogSeconds,
		StateDir:        config.DefaultStateDir,
		ProtectPaths:    config.DefaultProtectPaths,
		Retention:       snapset.Policy{KeepLast: 7},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("parsed\n %+v\nwant\n %+v", c, want)
	}
	if c.Watchdog() != 10*time.Second {
		t.Fatalf("Watchdog() = %s", c.Watchdog())
	}
}

func TestParseKeepsExplicitValues(t *testing.T) {
	c, err := config.Parse(doc(
		set("snapshotSource", "primary"),
		set("consistency", "crash"),
		set("watchdogSeconds", 30),
		set("stateDir", "/run/pgfleet-main"),
		set("volumes", map[string]any{"mounts": []string{"/data", "/wal"}, "filesystem": "xfs"}),
		set("postgres", map[string]any{"version": "16", "pgdata": "/data/pg", "port": 6432, "binDir": "/opt/pg/bin"}),
		set("archive", map[string]any{"layout": "plain", "bucket": "wal", "prefix": "main/", "extension": ".zst"}),
	))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.SnapshotSource != "primary" || c.Consistency != "crash" || c.WatchdogSeconds != 30 || c.StateDir != "/run/pgfleet-main" {
		t.Fatalf("explicit values replaced by defaults: %+v", c)
	}
	if c.Postgres.Port != 6432 || c.Postgres.BinDir != "/opt/pg/bin" || c.Volumes.Filesystem != "xfs" {
		t.Fatalf("explicit values replaced by defaults: %+v", c.Postgres)
	}
	if c.Archive == nil || c.Archive.SegmentSizeMiB != 16 || c.Archive.MaxDeletesPerRun != config.DefaultMaxDeletesPerRun {
		t.Fatalf("archive defaults not applied: %+v", c.Archive)
	}
}

func TestParseRejectsBadDocuments(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		// want are substrings the error must contain: the field to fix.
		want []string
	}{
		{name: "typo in a field name", data: []byte(strings.Replace(string(doc()), `"watchdogSeconds"`, `"watchdogSecond"`, 1)), want: []string{`"watchdogSecond"`}},
		{name: "typo in a nested field name", data: doc(set("volumes", map[string]any{"mount": []string{"/data"}})), want: []string{`"mount"`}},
		{name: "not JSON", data: []byte(`name: main`), want: []string{"parse cluster configuration"}},
		{name: "two documents", data: append(doc(), doc()...), want: []string{"parse cluster configuration"}},
		{name: "upper-case name", data: doc(set("name", "Main")), want: []string{"name \"Main\""}},
		{name: "path in the name", data: doc(set("name", "../x")), want: []string{"name \"../x\""}},
		{name: "no member tags", data: doc(set("members", map[string]any{})), want: []string{"members.tags"}},
		{name: "empty member tag value", data: doc(set("members", map[string]any{"tags": map[string]string{"pgfleet:cluster": ""}})), want: []string{"members.tags"}},
		{name: "bad snapshot source", data: doc(set("snapshotSource", "standby")), want: []string{"snapshotSource"}},
		{name: "no postgres version", data: doc(set("postgres", map[string]any{"pgdata": "/var/lib/postgresql/15/main"})), want: []string{"postgres.version"}},
		{name: "relative pgdata", data: doc(set("postgres", map[string]any{"version": "15", "pgdata": "var/lib/postgresql"})), want: []string{"postgres.pgdata"}},
		{name: "no mounts", data: doc(set("volumes", map[string]any{"mounts": []string{}})), want: []string{"volumes.mounts"}},
		{name: "mounts include /", data: doc(set("volumes", map[string]any{"mounts": []string{"/", "/var/lib/postgresql"}})), want: []string{"volumes.mounts", `"/" can never be frozen`}},
		{name: "mount listed twice", data: doc(set("volumes", map[string]any{"mounts": []string{"/var/lib/postgresql", "/var/lib/postgresql"}})), want: []string{"volumes.mounts", "twice"}},
		{name: "unclean mount", data: doc(set("volumes", map[string]any{"mounts": []string{"/var/lib/postgresql/"}})), want: []string{"volumes.mounts"}},
		{name: "pgdata not under a mount", data: doc(set("volumes", map[string]any{"mounts": []string{"/var/lib/postgres"}})), want: []string{"postgres.pgdata", "none of volumes.mounts"}},
		{name: "stateDir on a data mount", data: doc(set("stateDir", "/var/lib/postgresql/pgfleet")), want: []string{"stateDir", "data mount"}},
		{name: "relative stateDir", data: doc(set("stateDir", "run/pgfleet")), want: []string{"stateDir"}},
		// What the host scripts refuse, configuration refuses: one set of patterns for both.
		{name: "space in socketDir", data: doc(set("postgres", map[string]any{"version": "15", "pgdata": "/var/lib/postgresql/15/main", "socketDir": "/var/run/post gres"})), want: []string{"postgres.socketDir", "no spaces"}},
		{name: "shell metacharacter in binDir", data: doc(set("postgres", map[string]any{"version": "15", "pgdata": "/var/lib/postgresql/15/main", "binDir": "/usr/lib/$(reboot)"})), want: []string{"postgres.binDir"}},
		{name: "comma in a mount", data: doc(set("volumes", map[string]any{"mounts": []string{"/var/lib/postgresql,/x"}})), want: []string{"volumes.mounts"}},
		{name: "quote in pgdata", data: doc(set("postgres", map[string]any{"version": "15", "pgdata": "/var/lib/postgresql/15/'main"})), want: []string{"postgres.pgdata"}},
		{name: "long osUser", data: doc(set("postgres", map[string]any{"version": "15", "pgdata": "/var/lib/postgresql/15/main", "osUser": strings.Repeat("p", 33)})), want: []string{"postgres.osUser"}},
		{name: "space in stateDir", data: doc(set("stateDir", "/run/pg fleet")), want: []string{"stateDir"}},
		{name: "space in a protect path", data: doc(set("protectPaths", []string{"/opt/my agent"})), want: []string{"protectPaths"}},
		{name: "watchdog too long", data: doc(set("watchdogSeconds", 1000)), want: []string{"watchdogSeconds 1000"}},
		{name: "negative watchdog", data: doc(set("watchdogSeconds", -1)), want: []string{"watchdogSeconds -1"}},
		{name: "btrfs", data: doc(set("volumes", map[string]any{"mounts": []string{"/var/lib/postgresql"}, "filesystem": "btrfs"})), want: []string{"volumes.filesystem", "btrfs"}},
		{name: "bad consistency", data: doc(set("consistency", "snapshot")), want: []string{"consistency \"snapshot\""}},
		{name: "retention keepLast 0", data: doc(set("retention", map[string]any{"keepLast": 0, "daily": 7})), want: []string{"retention.keepLast"}},
		{name: "no retention", data: doc(del("retention")), want: []string{"retention.keepLast"}},
		{name: "protected path on a data mount", data: doc(set("volumes", map[string]any{"mounts": []string{"/var"}})), want: []string{"protectPaths", "/var/lib/amazon/ssm"}},
		{
			name: "own protect paths do not drop the SSM agent's",
			data: doc(set("volumes", map[string]any{"mounts": []string{"/var"}}), set("protectPaths", []string{"/opt/app"})),
			want: []string{"protectPaths", "/var/lib/amazon/ssm"},
		},
		{name: "pgbackrest without stanza", data: doc(set("archive", map[string]any{"layout": "pgbackrest", "bucket": "wal", "prefix": "/repo"})), want: []string{"archive.stanza"}},
		{name: "unknown archive layout", data: doc(set("archive", map[string]any{"layout": "barman", "bucket": "wal"})), want: []string{"archive.layout"}},
		{name: "archive without bucket", data: doc(set("archive", map[string]any{"layout": "walg"})), want: []string{"archive.bucket"}},
		{name: "bad extension", data: doc(set("archive", map[string]any{"layout": "plain", "bucket": "wal", "extension": "gz"})), want: []string{"archive.extension", `"gz"`}},
		{name: "bad segment size", data: doc(set("archive", map[string]any{"layout": "plain", "bucket": "wal", "segmentSizeMiB": 48})), want: []string{"archive.segmentSizeMiB 48"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Parse(tc.data)
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestValidateReportsEveryProblemAtOnce(t *testing.T) {
	_, err := config.Parse(doc(
		set("name", "Bad_Name"),
		set("members", map[string]any{}),
		set("watchdogSeconds", 1000),
		set("consistency", "none"),
		set("retention", map[string]any{"keepLast": 0}),
	))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range []string{"name \"Bad_Name\"", "members.tags", "watchdogSeconds", "consistency", "retention.keepLast"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not mention %q:\n%v", w, err)
		}
	}
	if n := strings.Count(err.Error(), "\n  - "); n != 5 {
		t.Errorf("want 5 listed problems, got %d:\n%v", n, err)
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"main", true},
		{"db-2", true},
		{"0", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"-main", false},
		{"Main", false},
		{"main_db", false},
		{"../x", false},
		{"a/b", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := config.ValidName(tc.name); got != tc.ok {
				t.Fatalf("ValidName(%q) = %v", tc.name, got)
			}
		})
	}
}

// doc builds a valid cluster document, with edits applied.
func doc(edits ...func(map[string]any)) []byte {
	m := map[string]any{
		"name":            "main",
		"members":         map[string]any{"tags": map[string]string{"pgfleet:cluster": "main"}},
		"postgres":        map[string]any{"version": "15", "pgdata": "/var/lib/postgresql/15/main"},
		"volumes":         map[string]any{"mounts": []string{"/var/lib/postgresql"}},
		"watchdogSeconds": 0,
		"retention":       map[string]any{"keepLast": 7},
	}
	for _, e := range edits {
		e(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func set(key string, v any) func(map[string]any) {
	return func(m map[string]any) { m[key] = v }
}

func del(key string) func(map[string]any) {
	return func(m map[string]any) { delete(m, key) }
}
