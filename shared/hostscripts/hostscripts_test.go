package hostscripts_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgfleet/pgfleet/shared/fleet/fleetfake"
	"github.com/pgfleet/pgfleet/shared/hostscripts"
	"github.com/pgfleet/pgfleet/shared/testutil"
)

func TestArgsArgv(t *testing.T) {
	tests := []struct {
		name    string
		script  hostscripts.Name
		args    hostscripts.Args
		want    []string
		wantErr string
	}{
		{
			name:   "freeze sorted, empty values left to the default",
			script: hostscripts.Freeze,
			args: hostscripts.Args{"pgdata": "/data/pg/15/main", "mounts": "/data,/wal", "port": "5433",
				"watchdog-seconds": "300", "protect": "", "consistency": "crash", "filesystem": "xfs"},
			want: []string{"--consistency", "crash", "--filesystem", "xfs", "--mounts", "/data,/wal",
				"--pgdata", "/data/pg/15/main", "--port", "5433", "--watchdog-seconds", "300"},
		},
		{
			name:   "thaw",
			script: hostscripts.Thaw,
			args:   hostscripts.Args{"mounts": "/data", "state-dir": "/run/pgfleet", "probe": "no", "pgdata": ""},
			want:   []string{"--mounts", "/data", "--probe", "no", "--state-dir", "/run/pgfleet"},
		},
		{name: "unknown flag", script: hostscripts.Freeze, args: hostscripts.Args{"pgdata": "/d", "mounts": "/d", "verbose": "1"}, wantErr: `unknown flag "verbose"`},
		{name: "thaw flag given to freeze", script: hostscripts.Freeze, args: hostscripts.Args{"pgdata": "/d", "mounts": "/d", "probe": "yes"}, wantErr: `unknown flag "probe"`},
		{name: "semicolon", script: hostscripts.Freeze, args: hostscripts.Args{"pgdata": "/d", "mounts": "/d;reboot"}, wantErr: "--mounts"},
		{name: "command substitution", script: hostscripts.Freeze, args: hostscripts.Args{"pgdata": "/d/$(reboot)", "mounts": "/d"}, wantErr: "--pgdata"},
		{name: "backtick", script: hostscripts.Thaw, args: hostscripts.Args{"mounts": "/d`id`"}, wantErr: "--mounts"},
		{name: "space", script: hostscripts.Thaw, args: hostscripts.Args{"mounts": "/d", "state-dir": "/run/pg fleet"}, wantErr: "--state-dir"},
		{name: "quote", script: hostscripts.Freeze, args: hostscripts.Args{"pgdata": "/d", "mounts": "/d", "pg-user": "postgres'"}, wantErr: "--pg-user"},
		{name: "pipe", script: hostscripts.Freeze, args: hostscripts.Args{"pgdata": "/d", "mounts": "/d", "port": "5432|nc"}, wantErr: "--port"},
		{name: "newline", script: hostscripts.Freeze, args: hostscripts.Args{"pgdata": "/d\n/e", "mounts": "/d"}, wantErr: "--pgdata"},
		{name: "relative path", script: hostscripts.Freeze, args: hostscripts.Args{"pgdata": "data", "mounts": "/d"}, wantErr: "--pgdata"},
		{name: "empty list item", script: hostscripts.Freeze, args: hostscripts.Args{"pgdata": "/d", "mounts": "/d,,/e"}, wantErr: "--mounts"},
		{name: "watchdog zero", script: hostscripts.Freeze, args: hostscripts.Args{"pgdata": "/d", "mounts": "/d", "watchdog-seconds": "0"}, wantErr: "--watchdog-seconds"},
		{name: "watchdog too long", script: hostscripts.Freeze, args: hostscripts.Args{"pgdata": "/d", "mounts": "/d", "watchdog-seconds": "301"}, wantErr: "--watchdog-seconds"},
		{name: "bad consistency", script: hostscripts.Freeze, args: hostscripts.Args{"pgdata": "/d", "mounts": "/d", "consistency": "none"}, wantErr: "--consistency"},
		{name: "missing required", script: hostscripts.Freeze, args: hostscripts.Args{"mounts": "/d"}, wantErr: "--pgdata is required"},
		{name: "required but empty", script: hostscripts.Thaw, args: hostscripts.Args{"mounts": ""}, wantErr: "--mounts is required"},
		{name: "unknown script", script: "reboot", args: hostscripts.Args{}, wantErr: "unknown host script"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.args.Argv(tc.script)
			ssm, serr := tc.args.SSMParameters(tc.script)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Argv error = %v; want one containing %q", err, tc.wantErr)
				}
				if serr == nil || serr.Error() != err.Error() {
					t.Fatalf("SSMParameters error = %v; want %v", serr, err)
				}
				return
			}
			if err != nil || serr != nil {
				t.Fatalf("Argv = %v, SSMParameters = %v", err, serr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Argv = %q; want %q", got, tc.want)
			}
			if len(ssm) != len(got)/2 {
				t.Errorf("SSMParameters has %d entries for %d flags: %v", len(ssm), len(got)/2, ssm)
			}
		})
	}
}

func TestSSMParameters(t *testing.T) {
	got, err := hostscripts.Args{"pgdata": "/data/pg", "mounts": "/data,/wal", "watchdog-seconds": "15", "protect": "/var/lib/amazon/ssm"}.SSMParameters(hostscripts.Freeze)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"PGData": {"/data/pg"}, "Mounts": {"/data,/wal"}, "WatchdogSeconds": {"15"}, "ProtectPaths": {"/var/lib/amazon/ssm"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SSMParameters = %v; want %v", got, want)
	}
}

func TestSpecsAreWellFormed(t *testing.T) {
	names := map[hostscripts.Name]bool{}
	for _, s := range hostscripts.Specs() {
		names[s.Name] = true
		if s.Description == "" {
			t.Errorf("%s has no description", s.Name)
		}
		if _, err := hostscripts.Source(s.Name); err != nil {
			t.Errorf("Source(%s): %v", s.Name, err)
		}
		ssmRE := regexp.MustCompile(`^[A-Z][A-Za-z]+$`)
		flagRE := regexp.MustCompile(`^[a-z]+(-[a-z]+)*$`)
		seen := map[string]bool{}
		for _, p := range s.Params {
			if !flagRE.MatchString(p.Flag) || !ssmRE.MatchString(p.SSMName) || p.Description == "" {
				t.Errorf("%s: malformed param %+v", s.Name, p)
			}
			if seen[p.SSMName] {
				t.Errorf("%s: SSM name %s used twice", s.Name, p.SSMName)
			}
			seen[p.SSMName] = true
			re, err := regexp.Compile(p.Pattern)
			if err != nil {
				t.Errorf("%s --%s: pattern %q: %v", s.Name, p.Flag, p.Pattern, err)
				continue
			}
			if !strings.HasPrefix(p.Pattern, "^") || !strings.HasSuffix(p.Pattern, "$") {
				t.Errorf("%s --%s: pattern %q is not anchored", s.Name, p.Flag, p.Pattern)
			}
			if p.Required && p.Default != "" {
				t.Errorf("%s --%s: required with a default", s.Name, p.Flag)
			}
			if !p.Required && !re.MatchString(p.Default) {
				t.Errorf("%s --%s: default %q does not match its own pattern %q", s.Name, p.Flag, p.Default, p.Pattern)
			}
			for _, bad := range []string{"a b", "x;y", "$(id)", "`id`", "a|b", "a&b", "a>b", "a<b", "'", `"`, `\`, "*", "?", "{a}", "\n", "~"} {
				if re.MatchString(bad) || re.MatchString("/"+bad) {
					t.Errorf("%s --%s: pattern %q admits %q", s.Name, p.Flag, p.Pattern, bad)
				}
			}
		}
	}
	for _, n := range []hostscripts.Name{hostscripts.Freeze, hostscripts.Thaw} {
		if !names[n] {
			t.Errorf("Specs lacks %s", n)
		}
	}
	if _, err := hostscripts.Source("nope"); err == nil {
		t.Error("Source of an unknown script succeeded")
	}
}

// TestSpecsMatchScripts fails when a script and its Spec drift apart: every case arm of the
// argument parser is a Param with the same default and the same value pattern, and back.
func TestSpecsMatchScripts(t *testing.T) {
	armRE := regexp.MustCompile(`(?m)^\s*--([a-z-]+)\) setopt opt_([a-z_]+) "\$2" ;;$`)
	defaultRE := regexp.MustCompile(`(?m)^opt_([a-z_]+)='([^']*)'$`)
	checkRE := regexp.MustCompile(`(?m)\bcheck ([a-z-]+) "\$opt_([a-z_]+)" "\$(RE_[A-Z_]+)"`)
	constRE := regexp.MustCompile(`(?m)^(?:readonly |\t)(RE_[A-Z_]+)='([^']*)'(?: \\)?$`)
	for _, spec := range hostscripts.Specs() {
		t.Run(string(spec.Name), func(t *testing.T) {
			src, err := hostscripts.Source(spec.Name)
			if err != nil {
				t.Fatal(err)
			}
			arms := map[string]bool{}
			for _, m := range armRE.FindAllStringSubmatch(src, -1) {
				if want := strings.ReplaceAll(m[1], "-", "_"); m[2] != want {
					t.Errorf("--%s sets opt_%s; want opt_%s", m[1], m[2], want)
				}
				arms[m[1]] = true
			}
			defaults := map[string]string{}
			for _, m := range defaultRE.FindAllStringSubmatch(src, -1) {
				defaults[strings.ReplaceAll(m[1], "_", "-")] = m[2]
			}
			consts := map[string]string{}
			for _, m := range constRE.FindAllStringSubmatch(src, -1) {
				consts[m[1]] = m[2]
			}
			checks := map[string]string{}
			for _, m := range checkRE.FindAllStringSubmatch(src, -1) {
				checks[m[1]] = consts[m[3]]
			}
			params := map[string]bool{}
			for _, p := range spec.Params {
				params[p.Flag] = true
				if !arms[p.Flag] {
					t.Errorf("Spec has --%s; the script does not accept it", p.Flag)
				}
				def, ok := defaults[p.Flag]
				if !ok {
					t.Errorf("the script has no default line opt_%s=''", strings.ReplaceAll(p.Flag, "-", "_"))
				} else if def != p.Default {
					t.Errorf("--%s: script default %q, Spec default %q", p.Flag, def, p.Default)
				}
				scriptPat, ok := checks[p.Flag]
				if !ok {
					t.Errorf("the script never checks --%s against a pattern", p.Flag)
					continue
				}
				optional := "^(" + strings.TrimSuffix(strings.TrimPrefix(scriptPat, "^"), "$") + ")?$"
				if p.Pattern != scriptPat && p.Pattern != optional {
					t.Errorf("--%s: script pattern %q, Spec pattern %q", p.Flag, scriptPat, p.Pattern)
				}
			}
			for f := range arms {
				if !params[f] {
					t.Errorf("the script accepts --%s; the Spec does not list it", f)
				}
			}
			if len(arms) == 0 {
				t.Fatal("found no case arms: the parser's shape changed, update this test")
			}
		})
	}
}

func TestLastJSONLine(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    string
		wantErr bool
	}{
		{"one line", `{"ok":true}` + "\n", `{"ok":true}`, false},
		{"noise before", "starting\n{not json\n" + `{"ok":false,"error":"x"}` + "\n", `{"ok":false,"error":"x"}`, false},
		{"last of several", `{"a":1}` + "\n" + `{"a":2}` + "\n\n  \n", `{"a":2}`, false},
		{"trailing noise skipped", `{"a":1}` + "\nwarning: something\n", `{"a":1}`, false},
		{"crlf", "{\"a\":1}\r\n", `{"a":1}`, false},
		{"array is not an object", `[1,2]` + "\n", "", true},
		{"broken object", `{"a":` + "\n", "", true},
		{"empty", "", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hostscripts.LastJSONLine([]byte(tc.out))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("LastJSONLine = %s; want an error", got)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("LastJSONLine = %s, %v; want %s", got, err, tc.want)
			}
		})
	}
	_, err := hostscripts.LastJSONLine([]byte(strings.Repeat("x", 1000) + "the end of the output"))
	if err == nil || !strings.Contains(err.Error(), "the end of the output") || len(err.Error()) > 500 {
		t.Errorf("error should name the output's tail, briefly: %v", err)
	}
}

func TestWritesBlockedMicros(t *testing.T) {
	tests := []struct {
		name string
		f    hostscripts.FreezeResult
		th   hostscripts.ThawResult
		want int64
	}{
		{"frozen", hostscripts.FreezeResult{Frozen: true, FreezeStartedUS: 1_000_000}, hostscripts.ThawResult{ThawedUS: 1_012_345}, 12_345},
		{"not frozen", hostscripts.FreezeResult{Frozen: false, FreezeStartedUS: 1_000_000}, hostscripts.ThawResult{ThawedUS: 1_012_345}, 0},
		{"thaw without time", hostscripts.FreezeResult{Frozen: true, FreezeStartedUS: 1_000_000}, hostscripts.ThawResult{}, 0},
		{"clock went back", hostscripts.FreezeResult{Frozen: true, FreezeStartedUS: 2_000_000}, hostscripts.ThawResult{ThawedUS: 1_000_000}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.f.WritesBlockedMicros(tc.th); got != tc.want {
				t.Errorf("WritesBlockedMicros = %d; want %d", got, tc.want)
			}
		})
	}
}

func TestResultJSONNames(t *testing.T) {
	line := `{"ok":true,"action":"freeze","host":"h","error":"","frozen":true,"zfs":false,"consistency":"freeze",` +
		`"mounts":[{"path":"/d","fstype":"ext4","source":"/dev/nvme1n1","volume_id":"vol-0abc","frozen":true}],` +
		`"pg_version":"15.1","pg_version_num":150001,"in_recovery":true,"timeline":3,"redo_lsn":"0/2000028",` +
		`"redo_wal_file":"000000030000000000000002","snapshot_lsn":"0/2000100","standby_signal_written":true,` +
		`"watchdog_pid":42,"watchdog_deadline_us":9,"started_us":1,"freeze_started_us":2,"frozen_us":3,"finished_us":4}`
	dec := json.NewDecoder(strings.NewReader(line))
	dec.DisallowUnknownFields()
	var f hostscripts.FreezeResult
	if err := dec.Decode(&f); err != nil {
		t.Fatal(err)
	}
	want := hostscripts.FreezeResult{OK: true, Action: "freeze", Host: "h", Frozen: true, Consistency: "freeze",
		Mounts:    []hostscripts.MountResult{{Path: "/d", FSType: "ext4", Source: "/dev/nvme1n1", VolumeID: "vol-0abc", Frozen: true}},
		PGVersion: "15.1", PGVersionNum: 150001, InRecovery: true, Timeline: 3, RedoLSN: "0/2000028",
		RedoWALFile: "000000030000000000000002", SnapshotLSN: "0/2000100", StandbySignalWritten: true,
		WatchdogPID: 42, WatchdogDeadlineUS: 9, StartedUS: 1, FreezeStartedUS: 2, FrozenUS: 3, FinishedUS: 4}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("decoded %+v\nwant    %+v", f, want)
	}
	tline := `{"ok":true,"action":"thaw","host":"h","error":"","thawed":["/d"],"already_thawed":["/w"],"watchdog_disarmed":true,` +
		`"standby_signal_removed":true,"probe_ok":true,"started_us":1,"thaw_started_us":2,"thawed_us":3,"finished_us":4}`
	dec = json.NewDecoder(strings.NewReader(tline))
	dec.DisallowUnknownFields()
	var th hostscripts.ThawResult
	if err := dec.Decode(&th); err != nil {
		t.Fatal(err)
	}
	if !th.OK || th.ThawedUS != 3 || th.ThawStartedUS != 2 || len(th.Thawed) != 1 || len(th.AlreadyThawed) != 1 || !th.ProbeOK || !th.WatchdogDisarmed || !th.StandbySignalRemoved {
		t.Errorf("decoded %+v", th)
	}
}

// TestShellcheck checks each script as it runs: the assembled Source text, on stdin.
func TestShellcheck(t *testing.T) {
	sc := testutil.RequireBinary(t, "shellcheck")
	for _, s := range hostscripts.Specs() {
		t.Run(string(s.Name), func(t *testing.T) {
			src, err := hostscripts.Source(s.Name)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(sc, "--norc", "--shell=bash", "--severity=style", "-")
			cmd.Stdin = strings.NewReader(src)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("shellcheck of the assembled %s: %v\n%s", s.Name, err, out)
			}
		})
	}
}

// TestShellcheckFiles checks the script files one by one, as `make lint` does: common.sh alone
// and each script without it.
func TestShellcheckFiles(t *testing.T) {
	sc := testutil.RequireBinary(t, "shellcheck")
	files, err := filepath.Glob(filepath.Join("scripts", "*.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("found %v; want common.sh and every script", files)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if out, err := exec.Command(sc, f).CombinedOutput(); err != nil {
				t.Fatalf("shellcheck %s: %v\n%s", f, err, out)
			}
		})
	}
}

// TestSourceIsSelfContained checks Source splices common.sh in once, in place of the marker.
func TestSourceIsSelfContained(t *testing.T) {
	common, err := os.ReadFile(filepath.Join("scripts", "common.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range hostscripts.Specs() {
		src, err := hostscripts.Source(s.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(src, "#!/usr/bin/env bash\n") {
			t.Errorf("%s does not start with its shebang", s.Name)
		}
		if n := strings.Count(src, string(common)); n != 1 {
			t.Errorf("%s holds common.sh %d times; want once", s.Name, n)
		}
		for _, line := range strings.Split(src, "\n") {
			if line == hostscripts.CommonMarker {
				t.Errorf("%s still has the %q line", s.Name, line)
			}
		}
		for _, fn := range []string{"now_us", "log", "json_str", "json_arr", "split_csv", "watchdog_is_ours", "setopt", "check"} {
			if n := strings.Count(src, "\n"+fn+"() {"); n != 1 {
				t.Errorf("%s defines %s %d times; want once", s.Name, fn, n)
			}
		}
	}
}

// TestScriptsRejectBadInput runs the scripts (no root needed: they stop while parsing) and checks
// the single JSON failure line, including that odd bytes in an error are escaped.
func TestScriptsRejectBadInput(t *testing.T) {
	testutil.RequireBinary(t, "bash")
	tests := []struct {
		name    string
		script  hostscripts.Name
		argv    []string
		wantErr string
	}{
		{"freeze unknown flag", hostscripts.Freeze, []string{"--pgdata", "/d", "--mounts", "/d", "--bogus", "x"}, "unknown flag --bogus"},
		{"freeze metacharacters", hostscripts.Freeze, []string{"--pgdata", "/d", "--mounts", "/d;reboot"}, "--mounts"},
		{"freeze watchdog out of range", hostscripts.Freeze, []string{"--pgdata", "/d", "--mounts", "/d", "--watchdog-seconds", "301"}, "--watchdog-seconds"},
		{"freeze port out of range", hostscripts.Freeze, []string{"--pgdata", "/d", "--mounts", "/d", "--port", "70000"}, "--port 70000"},
		{"freeze missing pgdata", hostscripts.Freeze, []string{"--mounts", "/d"}, "--pgdata is required"},
		{"freeze flag without value", hostscripts.Freeze, []string{"--mounts", "/d", "--pgdata"}, "needs a value"},
		{"freeze escapes odd bytes", hostscripts.Freeze, []string{"--x\"y\\z\n\t\x01", "1"}, "unknown flag --x\"y\\z\n\t\x01"},
		{"thaw unknown flag", hostscripts.Thaw, []string{"--mounts", "/d", "--pgdata-dir", "/x"}, "unknown flag --pgdata-dir"},
		{"thaw bad probe", hostscripts.Thaw, []string{"--mounts", "/d", "--probe", "maybe"}, "--probe"},
		{"thaw missing mounts", hostscripts.Thaw, nil, "--mounts is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeScript(t, tc.script)
			stdout, _, code := runBash(t, path, nil, tc.argv...)
			if code == 0 {
				t.Fatalf("exit status 0; want non-zero")
			}
			lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
			if len(lines) != 1 {
				t.Fatalf("stdout has %d lines; want exactly one: %q", len(lines), stdout)
			}
			var res struct {
				OK     *bool  `json:"ok"`
				Action string `json:"action"`
				Error  string `json:"error"`
			}
			if err := json.Unmarshal([]byte(lines[0]), &res); err != nil {
				t.Fatalf("result %q: %v", lines[0], err)
			}
			if res.OK == nil || *res.OK || res.Action != string(tc.script) || !strings.Contains(res.Error, tc.wantErr) {
				t.Errorf("result %s; want ok:false, action %s, error containing %q", lines[0], tc.script, tc.wantErr)
			}
		})
	}
}

// writeScript writes an embedded script to a temporary file.
func writeScript(t testing.TB, n hostscripts.Name) string {
	t.Helper()
	src, err := hostscripts.Source(n)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), string(n)+".sh")
	if err := os.WriteFile(path, []byte(src), 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

// runBash runs `bash script argv...` with a bound, returning stdout, stderr and the exit status.
func runBash(t testing.TB, script string, env []string, argv ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{script}, argv...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = "/"
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// The scripts must not leave anything holding their output open (the watchdog is detached).
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		t.Fatalf("%s left a process holding its stdout or stderr", script)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run %s: %v\nstderr: %s", script, err, errb.String())
	}
	return out.String(), errb.String(), code
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// TestParseResultsRefuseWhatTheScriptsNeverPrint: the rules Check holds the lines to, each
// broken once. (The host tests feed every real line through the same parsers.)
func TestParseResultsRefuseWhatTheScriptsNeverPrint(t *testing.T) {
	okFreeze := fleetfake.FreezeOK(1_773_111_600_000_000,
		hostscripts.MountResult{Path: "/data", FSType: "xfs", Source: "/dev/nvme1n1", VolumeID: "vol-1", Frozen: true})
	okThaw := fleetfake.ThawOK(1_773_111_600_050_000, "/data")
	freezes := []struct {
		name string
		edit func(r *hostscripts.FreezeResult)
		want string
	}{
		{"valid", func(*hostscripts.FreezeResult) {}, ""},
		{"frozen without still_frozen", func(r *hostscripts.FreezeResult) { r.StillFrozen = nil }, "still_frozen"},
		{"failure says frozen, lists nothing", func(r *hostscripts.FreezeResult) {
			*r = fleetfake.FreezeFailed(r.FinishedUS, "x")
			r.Frozen = true
		}, "frozen true"},
		{"ok with an error", func(r *hostscripts.FreezeResult) { r.Error = "x" }, "ok true with error"},
		{"failure without an error", func(r *hostscripts.FreezeResult) { *r = fleetfake.FreezeFailed(r.FinishedUS, "") }, "ok false"},
		{"no watchdog", func(r *hostscripts.FreezeResult) { r.WatchdogPID = 0 }, "armed watchdog"},
		{"watchdog deadline before the freeze", func(r *hostscripts.FreezeResult) { r.WatchdogDeadlineUS = r.FrozenUS }, "out of order"},
		{"wrong action", func(r *hostscripts.FreezeResult) { r.Action = "thaw" }, "action"},
		{"no redo point", func(r *hostscripts.FreezeResult) { r.RedoWALFile = "" }, "checkpoint"},
	}
	for _, tc := range freezes {
		t.Run("freeze "+tc.name, func(t *testing.T) {
			r := okFreeze
			r.Mounts = slices.Clone(okFreeze.Mounts)
			tc.edit(&r)
			line, _ := json.Marshal(r)
			_, err := hostscripts.ParseFreezeResult(line)
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("ParseFreezeResult = %v; want an error containing %q", err, tc.want)
			}
		})
	}
	thaws := []struct {
		name string
		edit func(r *hostscripts.ThawResult)
		want string
	}{
		{"valid", func(*hostscripts.ThawResult) {}, ""},
		{"ok with a mount still frozen", func(r *hostscripts.ThawResult) { r.StillFrozen = []string{"/wal"} }, "still_frozen"},
		{"disarmed with a mount still frozen", func(r *hostscripts.ThawResult) {
			*r = fleetfake.ThawFailed(r.FinishedUS, "x", "/wal")
			r.WatchdogDisarmed = true
		}, "disarmed"},
		{"fired token without a time", func(r *hostscripts.ThawResult) { r.WatchdogFiredToken = "1-2" }, "watchdog_fired"},
		{"thawed before it started", func(r *hostscripts.ThawResult) { r.ThawedUS = r.ThawStartedUS - 1 }, "out of order"},
	}
	for _, tc := range thaws {
		t.Run("thaw "+tc.name, func(t *testing.T) {
			r := okThaw
			tc.edit(&r)
			line, _ := json.Marshal(r)
			_, err := hostscripts.ParseThawResult(line)
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("ParseThawResult = %v; want an error containing %q", err, tc.want)
			}
		})
	}
	for _, line := range []string{`{"ok":true,"action":"thaw","host":"pg","surprise":1}`, `{"ok":true} {"ok":true}`, `[1]`} {
		if _, err := hostscripts.ParseThawResult([]byte(line)); err == nil {
			t.Errorf("ParseThawResult(%s) accepted", line)
		}
	}
}
