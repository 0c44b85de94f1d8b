// Package hostscripts holds the scripts pgfleet runs on PostgreSQL hosts (freeze and thaw),
// embedded once: SSM Run Command runs them in AWS (the CDK stack builds Command documents from
// Specs) and the local site runs them with bash. It also validates script arguments and decodes
// the one-line JSON results the scripts print.
package hostscripts

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

//go:embed scripts/common.sh scripts/freeze.sh scripts/thaw.sh
var scripts embed.FS

// CommonMarker is the line of a script that Source replaces with scripts/common.sh, the
// constants and helpers every host script shares.
const CommonMarker = "# @common"

// Name names a host script.
type Name string

// The host scripts.
const (
	Freeze Name = "freeze"
	Thaw   Name = "thaw"
)

// Param is one flag of a host script.
type Param struct {
	// Flag is the script flag without the leading dashes, e.g. "watchdog-seconds".
	Flag string
	// SSMName is the SSM document parameter name, e.g. "WatchdogSeconds".
	SSMName string
	// Default is what the script uses when the flag is absent or empty.
	Default string
	// Pattern is an allowed-value regexp that admits no shell metacharacter (SSM allowedPattern).
	Pattern string
	// Description is for the SSM document.
	Description string
	// Required flags have no default: a run without them is refused.
	Required bool
}

// Spec describes one host script.
type Spec struct {
	Name        Name
	Description string
	Params      []Param
}

// Value patterns: the one definition of what the host scripts accept. Source writes them into
// each script (as the readonly RE_* variables its argument checks use), the SSM documents carry
// them as allowedPattern, and config.Validate checks a cluster's configuration with them, so a
// configuration that validates never builds arguments a script refuses. None admits whitespace,
// quotes, $, `, ;, |, &, <, >, globs, braces or backslashes.
const (
	patPath        = `^/[A-Za-z0-9._@+:/-]*$`
	patPathOrEmpty = `^(/[A-Za-z0-9._@+:/-]*)?$`
	patPaths       = `^/[A-Za-z0-9._@+:/-]*(,/[A-Za-z0-9._@+:/-]*)*$`
	patPort        = `^[0-9]{1,5}$`
	patUser        = `^[a-z_][a-z0-9_-]{0,31}$`
	patFilesystem  = `^(auto|ext4|xfs|zfs)$`
	patConsistency = `^(freeze|crash)$`
	patWatchdog    = `^([1-9]|[1-9][0-9]|[12][0-9][0-9]|300)$`
	patStandby     = `^(auto|never)$`
	patProbe       = `^(yes|no)$`
)

// scriptPatterns names each pattern as the scripts know it.
var scriptPatterns = []struct{ name, pattern string }{
	{"RE_PATH", patPath},
	{"RE_PATHS", patPaths},
	{"RE_PORT", patPort},
	{"RE_USER", patUser},
	{"RE_FILESYSTEM", patFilesystem},
	{"RE_CONSISTENCY", patConsistency},
	{"RE_WATCHDOG", patWatchdog},
	{"RE_STANDBY", patStandby},
	{"RE_PROBE", patProbe},
}

var (
	pathRE = regexp.MustCompile(patPath)
	userRE = regexp.MustCompile(patUser)
)

// ValidPath reports whether p is a path the host scripts accept (absolute; letters, digits and
// ._@+:/- only: no spaces, commas or shell metacharacters).
func ValidPath(p string) bool { return pathRE.MatchString(p) }

// ValidUser reports whether u is an OS user name the host scripts accept.
func ValidUser(u string) bool { return userRE.MatchString(u) }

// PathRule says, for messages, what ValidPath accepts.
const PathRule = "an absolute path of letters, digits and . _ @ + : / - (no spaces, commas or shell metacharacters)"

// Lock waits on the host. freeze.sh, thaw.sh and a firing watchdog take one exclusive lock in the
// state dir, so they never interleave.
const (
	// FreezeLockWait is how long a freeze waits for a thaw in progress before it refuses.
	FreezeLockWait = 20 * time.Second
	// ThawLockWait is how long a thaw waits for a freeze in progress before it fails (changing
	// nothing) so the caller can retry. A thaw attempt's timeout must be longer.
	ThawLockWait = 15 * time.Second
	// WatchdogLockWait is how long a firing watchdog waits for a freeze in progress before it
	// thaws anyway (and again once that freeze ends).
	WatchdogLockWait = 60 * time.Second
)

var specs = []Spec{
	{
		Name: Freeze,
		Description: "pgfleet freeze: checks the host, CHECKPOINTs PostgreSQL, writes standby.signal on a primary, " +
			"arms an on-host watchdog that thaws after a bounded time, and fsfreezes the data filesystems (never / or ZFS) " +
			"for one multi-volume EBS snapshot set. Prints one JSON line.",
		Params: []Param{
			{Flag: "pgdata", SSMName: "PGData", Pattern: patPath, Required: true,
				Description: "PostgreSQL data directory (PGDATA); it, pg_wal and tablespaces must be on the listed mounts."},
			{Flag: "port", SSMName: "Port", Default: "5432", Pattern: patPort,
				Description: "PostgreSQL port."},
			{Flag: "pg-bin", SSMName: "PGBin", Default: "/usr/lib/postgresql/15/bin", Pattern: patPath,
				Description: "Directory holding psql and pg_isready."},
			{Flag: "pg-user", SSMName: "PGUser", Default: "postgres", Pattern: patUser,
				Description: "OS user psql runs as."},
			{Flag: "pg-host", SSMName: "PGHost", Default: "/var/run/postgresql", Pattern: patPath,
				Description: "PostgreSQL Unix socket directory."},
			{Flag: "mounts", SSMName: "Mounts", Pattern: patPaths, Required: true,
				Description: "Comma-separated mount points of the data filesystems."},
			{Flag: "filesystem", SSMName: "Filesystem", Default: "auto", Pattern: patFilesystem,
				Description: "Expected filesystem of the mounts (auto: detect). ZFS is never frozen."},
			{Flag: "consistency", SSMName: "Consistency", Default: "freeze", Pattern: patConsistency,
				Description: "freeze: fsfreeze the mounts; crash: no fsfreeze, rely on the crash-consistent multi-volume set."},
			{Flag: "watchdog-seconds", SSMName: "WatchdogSeconds", Default: "10", Pattern: patWatchdog,
				Description: "The watchdog thaws after this many seconds (1-300)."},
			{Flag: "state-dir", SSMName: "StateDir", Default: "/run/pgfleet", Pattern: patPath,
				Description: "Directory for the freeze record and the watchdog log; never on a data mount."},
			{Flag: "protect", SSMName: "ProtectPaths", Default: "/var/lib/amazon/ssm,/var/log/amazon/ssm", Pattern: patPaths,
				Description: "Comma-separated paths whose filesystems must never be frozen."},
			{Flag: "standby-signal", SSMName: "StandbySignal", Default: "auto", Pattern: patStandby,
				Description: "auto: on a primary, put standby.signal into the snapshot so a restore never promotes itself."},
		},
	},
	{
		Name: Thaw,
		Description: "pgfleet thaw: thaws the data filesystems (idempotent), disarms the watchdog, removes the standby.signal " +
			"freeze wrote and the freeze record, and probes each mount with a bounded write. Prints one JSON line.",
		Params: []Param{
			{Flag: "mounts", SSMName: "Mounts", Pattern: patPaths, Required: true,
				Description: "Comma-separated mount points of the data filesystems."},
			{Flag: "pgdata", SSMName: "PGData", Default: "", Pattern: patPathOrEmpty,
				Description: "PostgreSQL data directory, for standby.signal cleanup (default: from the freeze record)."},
			{Flag: "state-dir", SSMName: "StateDir", Default: "/run/pgfleet", Pattern: patPath,
				Description: "Directory of the freeze record."},
			{Flag: "probe", SSMName: "Probe", Default: "yes", Pattern: patProbe,
				Description: "yes: after thawing, check each mount takes a small fsync'd write (bounded wait)."},
		},
	},
}

var compiled = func() map[string]*regexp.Regexp {
	out := map[string]*regexp.Regexp{}
	for _, s := range specs {
		for _, p := range s.Params {
			out[p.Pattern] = regexp.MustCompile(p.Pattern)
		}
	}
	return out
}()

// Specs describes every host script and its flags.
func Specs() []Spec {
	out := make([]Spec, len(specs))
	for i, s := range specs {
		out[i] = s
		out[i].Params = append([]Param(nil), s.Params...)
	}
	return out
}

// SpecOf describes one host script.
func SpecOf(n Name) (Spec, error) {
	for _, s := range Specs() {
		if s.Name == n {
			return s, nil
		}
	}
	return Spec{}, fmt.Errorf("unknown host script %q", n)
}

// Source returns the text of a host script, self-contained: the script with its CommonMarker
// line replaced by the value patterns and lock waits (from this package's constants) and
// scripts/common.sh. Everything that runs or publishes a script uses this text.
func Source(n Name) (string, error) {
	if _, err := SpecOf(n); err != nil {
		return "", err
	}
	b, err := scripts.ReadFile("scripts/" + string(n) + ".sh")
	if err != nil {
		return "", fmt.Errorf("read embedded script %s: %w", n, err)
	}
	common, err := scripts.ReadFile("scripts/common.sh")
	if err != nil {
		return "", fmt.Errorf("read embedded common.sh: %w", err)
	}
	return splice(string(n), string(b), generated()+string(common))
}

// generated is the shell text of the values the scripts take from Go: the value patterns and
// the lock waits.
func generated() string {
	var b strings.Builder
	b.WriteString("# Written by hostscripts.Source from its Go constants: the value patterns config validation\n")
	b.WriteString("# and the SSM documents use too, and the lock waits the callers' timeouts are built on.\n")
	b.WriteString("# shellcheck disable=SC2034 # not every script uses every value\n")
	b.WriteString("readonly \\\n")
	for _, p := range scriptPatterns {
		if strings.Contains(p.pattern, "'") {
			panic("hostscripts: pattern " + p.name + " holds a single quote")
		}
		fmt.Fprintf(&b, "\t%s='%s' \\\n", p.name, p.pattern)
	}
	fmt.Fprintf(&b, "\tFREEZE_LOCK_WAIT_SECONDS=%d \\\n", int(FreezeLockWait/time.Second))
	fmt.Fprintf(&b, "\tTHAW_LOCK_WAIT_SECONDS=%d \\\n", int(ThawLockWait/time.Second))
	fmt.Fprintf(&b, "\tWATCHDOG_LOCK_WAIT_SECONDS=%d\n", int(WatchdogLockWait/time.Second))
	return b.String()
}

// splice returns script with its one CommonMarker line replaced by common.
func splice(name, script, common string) (string, error) {
	lines := strings.SplitAfter(script, "\n")
	at := -1
	for i, line := range lines {
		if strings.TrimRight(line, "\r\n") != CommonMarker {
			continue
		}
		if at >= 0 {
			return "", fmt.Errorf("host script %s has more than one %q line", name, CommonMarker)
		}
		at = i
	}
	if at < 0 {
		return "", fmt.Errorf("host script %s has no %q line where common.sh goes", name, CommonMarker)
	}
	if common != "" && !strings.HasSuffix(common, "\n") {
		common += "\n"
	}
	return strings.Join(lines[:at], "") + common + strings.Join(lines[at+1:], ""), nil
}

// Args are script arguments: flag (without dashes) -> value. An empty value means the default.
type Args map[string]string

// validated checks every flag and value against the script's spec and returns the non-empty
// arguments with their params, sorted by flag.
func (a Args) validated(n Name) ([]Param, []string, error) {
	spec, err := SpecOf(n)
	if err != nil {
		return nil, nil, err
	}
	byFlag := map[string]Param{}
	for _, p := range spec.Params {
		byFlag[p.Flag] = p
	}
	flags := make([]string, 0, len(a))
	for f := range a {
		flags = append(flags, f)
	}
	sort.Strings(flags)
	var params []Param
	var values []string
	for _, f := range flags {
		p, ok := byFlag[f]
		if !ok {
			known := make([]string, 0, len(spec.Params))
			for _, q := range spec.Params {
				known = append(known, q.Flag)
			}
			return nil, nil, fmt.Errorf("%s: unknown flag %q (known: %s)", n, f, strings.Join(known, ", "))
		}
		v := a[f]
		if v == "" {
			continue
		}
		if !compiled[p.Pattern].MatchString(v) {
			return nil, nil, fmt.Errorf("%s: --%s %q is not allowed: it must match %s (no spaces or shell metacharacters)", n, f, v, p.Pattern)
		}
		params = append(params, p)
		values = append(values, v)
	}
	for _, p := range spec.Params {
		if p.Required && a[p.Flag] == "" {
			return nil, nil, fmt.Errorf("%s: --%s is required", n, p.Flag)
		}
	}
	return params, values, nil
}

// Argv returns the validated arguments as a "--flag value" list sorted by flag. Empty values are
// left out (the script's default applies); an unknown flag, a value that does not match the
// flag's pattern or a missing required flag is an error.
func (a Args) Argv(n Name) ([]string, error) {
	params, values, err := a.validated(n)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, 2*len(params))
	for i, p := range params {
		out = append(out, "--"+p.Flag, values[i])
	}
	return out, nil
}

// SSMParameters returns the validated arguments as SSM Run Command parameters (SSMName ->
// [value]), validated like Argv.
func (a Args) SSMParameters(n Name) (map[string][]string, error) {
	params, values, err := a.validated(n)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]string, len(params))
	for i, p := range params {
		out[p.SSMName] = []string{values[i]}
	}
	return out, nil
}

// LastJSONLine returns the last line of out that parses as a JSON object: a script's result.
func LastJSONLine(out []byte) ([]byte, error) {
	lines := bytes.Split(out, []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		line := bytes.TrimSpace(lines[i])
		if len(line) < 2 || line[0] != '{' {
			continue
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(line, &obj) == nil {
			return append([]byte(nil), line...), nil
		}
	}
	tail := string(bytes.TrimSpace(out))
	if len(tail) > 300 {
		tail = "..." + tail[len(tail)-300:]
	}
	return nil, fmt.Errorf("no JSON result line in the script output (output ends with %q)", tail)
}

// MountResult is one data mount in a freeze result.
type MountResult struct {
	Path   string `json:"path"`
	FSType string `json:"fstype"`
	Source string `json:"source"`
	// VolumeID is the EBS volume id (from the nvme serial; several joined by commas when the
	// filesystem spans volumes), the backing file of a loop device, or "" when unknown.
	VolumeID string `json:"volume_id"`
	Frozen   bool   `json:"frozen"`
}

// FreezeResult is the JSON line freeze.sh prints. A failure line carries only ok, action, host,
// error, frozen, still_frozen, token and the start and finish times.
type FreezeResult struct {
	OK     bool   `json:"ok"`
	Action string `json:"action"`
	Host   string `json:"host"`
	Error  string `json:"error"`
	// Token identifies this freeze on the host (its record, watchdog and standby.signal marker);
	// a thaw reports it back when this freeze's watchdog fired.
	Token string `json:"token"`
	// Frozen: some mount is still frozen when the script exits. On success, at least one mount
	// was fsfrozen (ZFS and crash consistency freeze nothing); on failure, the rollback could
	// not thaw every mount (StillFrozen lists them, the watchdog thaws them).
	Frozen bool `json:"frozen"`
	// StillFrozen lists the mounts frozen when the script exited.
	StillFrozen []string `json:"still_frozen"`
	// ZFS: at least one mount is ZFS (never frozen).
	ZFS         bool          `json:"zfs"`
	Consistency string        `json:"consistency"`
	Mounts      []MountResult `json:"mounts"`
	PGVersion   string        `json:"pg_version"`
	// PGVersionNum is server_version_num, e.g. 150010.
	PGVersionNum int  `json:"pg_version_num"`
	InRecovery   bool `json:"in_recovery"`
	Timeline     int  `json:"timeline"`
	// RedoLSN and RedoWALFile are the checkpoint's redo point: the first WAL a restore needs.
	RedoLSN     string `json:"redo_lsn"`
	RedoWALFile string `json:"redo_wal_file"`
	// SnapshotLSN is pg_current_wal_lsn() on a primary, pg_last_wal_replay_lsn() on a replica.
	SnapshotLSN          string `json:"snapshot_lsn"`
	StandbySignalWritten bool   `json:"standby_signal_written"`
	WatchdogPID          int    `json:"watchdog_pid"`
	// WatchdogDeadlineUS is when the watchdog thaws: --watchdog-seconds after the mounts were
	// frozen (FrozenUS), or after the script's end of work when nothing was frozen.
	WatchdogDeadlineUS int64 `json:"watchdog_deadline_us"`
	// Host-clock microseconds since the epoch. FreezeStartedUS and FrozenUS are 0 when nothing
	// was frozen.
	StartedUS       int64 `json:"started_us"`
	FreezeStartedUS int64 `json:"freeze_started_us"`
	FrozenUS        int64 `json:"frozen_us"`
	FinishedUS      int64 `json:"finished_us"`
}

// ThawResult is the JSON line thaw.sh prints.
type ThawResult struct {
	OK     bool   `json:"ok"`
	Action string `json:"action"`
	Host   string `json:"host"`
	Error  string `json:"error"`
	// Thawed lists the mounts that were frozen and are now thawed; AlreadyThawed the ones that
	// were not frozen; StillFrozen the ones it could not thaw (or, when it could not take the
	// host's lock, the ones the freeze record lists).
	Thawed           []string `json:"thawed"`
	AlreadyThawed    []string `json:"already_thawed"`
	StillFrozen      []string `json:"still_frozen"`
	WatchdogDisarmed bool     `json:"watchdog_disarmed"`
	// WatchdogFiredToken is the token of the last freeze whose watchdog fired on this host, and
	// WatchdogFiredUS when: when it is the token of the freeze being thawed, the host was thawed
	// by the watchdog, not by this thaw, and a snapshot taken in between is not freeze-consistent.
	WatchdogFiredToken   string `json:"watchdog_fired_token"`
	WatchdogFiredUS      int64  `json:"watchdog_fired_us"`
	StandbySignalRemoved bool   `json:"standby_signal_removed"`
	// ProbeOK: every mount took a small fsync'd write within the bounded wait.
	ProbeOK bool `json:"probe_ok"`
	// Host-clock microseconds since the epoch.
	StartedUS     int64 `json:"started_us"`
	ThawStartedUS int64 `json:"thaw_started_us"`
	ThawedUS      int64 `json:"thawed_us"`
	FinishedUS    int64 `json:"finished_us"`
}

// WritesBlockedMicros is how long writes were blocked on the host: from the start of the freeze
// to the return of the last thaw, on the host clock. 0 when nothing was frozen or t has no time.
func (r FreezeResult) WritesBlockedMicros(t ThawResult) int64 {
	if !r.Frozen || r.FreezeStartedUS == 0 || t.ThawedUS == 0 || t.ThawedUS < r.FreezeStartedUS {
		return 0
	}
	return t.ThawedUS - r.FreezeStartedUS
}

// WatchdogFired reports whether the watchdog of the freeze fr fired before this thaw released
// the host.
func (t ThawResult) WatchdogFired(fr FreezeResult) bool {
	return fr.Token != "" && t.WatchdogFiredToken == fr.Token
}

// ParseFreezeResult decodes freeze.sh's result line: strictly (an unknown field is an error, so a
// script and this type cannot drift apart unnoticed) and checked with Check, so a line the
// script cannot print is an error, not a result.
func ParseFreezeResult(line []byte) (FreezeResult, error) {
	return parseResult[FreezeResult](Freeze, line)
}

// ParseThawResult decodes thaw.sh's result line like ParseFreezeResult.
func ParseThawResult(line []byte) (ThawResult, error) { return parseResult[ThawResult](Thaw, line) }

func parseResult[R interface{ Check() error }](n Name, line []byte) (R, error) {
	var r, zero R
	if err := decodeStrict(line, &r); err != nil {
		return zero, fmt.Errorf("read %s result %s: %w", n, quoteLine(line), err)
	}
	if err := r.Check(); err != nil {
		return zero, fmt.Errorf("%s result %s is not one %s.sh prints: %w", n, quoteLine(line), n, err)
	}
	return r, nil
}

// Check returns an error when r breaks a rule every line freeze.sh prints follows.
func (r FreezeResult) Check() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if r.Action != string(Freeze) {
		bad("action %q, want %q", r.Action, Freeze)
	}
	if r.Host == "" || r.StartedUS <= 0 || r.FinishedUS < r.StartedUS {
		bad("host %q, started_us %d, finished_us %d: every line names the host and its times", r.Host, r.StartedUS, r.FinishedUS)
	}
	if r.OK == (r.Error != "") {
		bad("ok %v with error %q", r.OK, r.Error)
	}
	if r.Frozen != (len(r.StillFrozen) > 0) {
		bad("frozen %v but still_frozen %v", r.Frozen, r.StillFrozen)
	}
	if r.OK {
		frozenMounts := map[string]bool{}
		for _, m := range r.Mounts {
			if m.Frozen {
				frozenMounts[m.Path] = true
			}
		}
		for _, m := range r.StillFrozen {
			if !frozenMounts[m] {
				bad("still_frozen %q is not a frozen mount of the result", m)
			}
		}
		if len(frozenMounts) != len(r.StillFrozen) {
			bad("%d mounts frozen, still_frozen lists %d", len(frozenMounts), len(r.StillFrozen))
		}
		if r.Token == "" || r.WatchdogPID <= 0 || r.WatchdogDeadlineUS <= r.StartedUS {
			bad("token %q, watchdog_pid %d, watchdog_deadline_us %d: a successful freeze has an armed watchdog", r.Token, r.WatchdogPID, r.WatchdogDeadlineUS)
		}
		if r.Frozen && (r.FreezeStartedUS < r.StartedUS || r.FrozenUS < r.FreezeStartedUS || r.FinishedUS < r.FrozenUS || r.WatchdogDeadlineUS <= r.FrozenUS) {
			bad("times out of order: started %d, freeze_started %d, frozen %d, watchdog deadline %d, finished %d", r.StartedUS, r.FreezeStartedUS, r.FrozenUS, r.WatchdogDeadlineUS, r.FinishedUS)
		}
		if !r.Frozen && (r.FreezeStartedUS != 0 || r.FrozenUS != 0) {
			bad("nothing frozen, yet freeze_started_us %d, frozen_us %d", r.FreezeStartedUS, r.FrozenUS)
		}
		if r.Timeline < 1 || len(r.RedoWALFile) != 24 || r.RedoLSN == "" || r.PGVersionNum <= 0 {
			bad("timeline %d, redo_wal_file %q, redo_lsn %q, pg_version_num %d: a successful freeze read the checkpoint", r.Timeline, r.RedoWALFile, r.RedoLSN, r.PGVersionNum)
		}
		if len(r.Mounts) == 0 {
			bad("no mounts")
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// Check returns an error when r breaks a rule every line thaw.sh prints follows.
func (r ThawResult) Check() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if r.Action != string(Thaw) {
		bad("action %q, want %q", r.Action, Thaw)
	}
	if r.Host == "" || r.StartedUS <= 0 || r.FinishedUS < r.StartedUS {
		bad("host %q, started_us %d, finished_us %d: every line names the host and its times", r.Host, r.StartedUS, r.FinishedUS)
	}
	if r.OK == (r.Error != "") {
		bad("ok %v with error %q", r.OK, r.Error)
	}
	if r.OK && len(r.StillFrozen) > 0 {
		bad("ok with still_frozen %v", r.StillFrozen)
	}
	if r.OK && (r.ThawStartedUS < r.StartedUS || r.ThawedUS < r.ThawStartedUS || r.FinishedUS < r.ThawedUS) {
		bad("times out of order: started %d, thaw_started %d, thawed %d, finished %d", r.StartedUS, r.ThawStartedUS, r.ThawedUS, r.FinishedUS)
	}
	if (r.WatchdogFiredToken == "") != (r.WatchdogFiredUS == 0) {
		bad("watchdog_fired_token %q with watchdog_fired_us %d", r.WatchdogFiredToken, r.WatchdogFiredUS)
	}
	if r.WatchdogDisarmed && len(r.StillFrozen) > 0 {
		bad("watchdog disarmed while %v is still frozen", r.StillFrozen)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// decodeStrict decodes exactly one JSON object with no unknown fields.
func decodeStrict(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("more than one JSON value")
	}
	return nil
}

func quoteLine(line []byte) string {
	s := string(line)
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return fmt.Sprintf("%q", s)
}
