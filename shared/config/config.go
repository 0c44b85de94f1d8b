// Package config is the cluster configuration: one JSON document per cluster, read from SSM
// Parameter Store in AWS and from a file locally, parsed once and validated with messages that
// say what to fix.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/pgfleet/pgfleet/shared/hostscripts"
	"github.com/pgfleet/pgfleet/shared/snapset"
)

// ErrUnknownCluster is returned when no configuration exists for a cluster name.
var ErrUnknownCluster = errors.New("unknown cluster")

// Cluster is the configuration of one PostgreSQL cluster.
type Cluster struct {
	// Name identifies the cluster in events, tags, leases and metrics.
	Name string `json:"name"`
	// Members says how the cluster's instances are found.
	Members Members `json:"members"`
	// SnapshotSource is the preferred member role to snapshot: "replica" (default) or "primary".
	SnapshotSource string `json:"snapshotSource"`
	// Postgres describes the server on every member.
	Postgres Postgres `json:"postgres"`
	// Volumes lists the data mount points that make up one snapshot set.
	Volumes Volumes `json:"volumes"`
	// Consistency is "freeze" (fsfreeze the data filesystems, default) or "crash" (no freeze:
	// rely on the multi-volume crash-consistent snapshot alone).
	Consistency string `json:"consistency"`
	// WatchdogSeconds bounds how long a host may stay frozen: the on-host watchdog thaws after it.
	WatchdogSeconds int `json:"watchdogSeconds"`
	// StateDir is the host directory for freeze records and the watchdog (never on a data mount).
	StateDir string `json:"stateDir"`
	// ProtectPaths are host paths whose filesystems must never be frozen, in addition to
	// DefaultProtectPaths.
	ProtectPaths []string `json:"protectPaths"`
	// Retention is the snapshot retention policy.
	Retention snapset.Policy `json:"retention"`
	// Archive describes the WAL archive (used by the WAL pruner).
	Archive *Archive `json:"archive,omitempty"`
}

// Members says how members are found: instances carrying all of Tags; RoleTag holds
// "primary" or "replica".
type Members struct {
	Tags    map[string]string `json:"tags"`
	RoleTag string            `json:"roleTag"`
}

// Postgres describes the PostgreSQL server on the members.
type Postgres struct {
	Version   string `json:"version"`
	PGData    string `json:"pgdata"`
	Port      int    `json:"port"`
	BinDir    string `json:"binDir"`
	OSUser    string `json:"osUser"`
	SocketDir string `json:"socketDir"`
}

// Volumes lists the data mounts and their filesystem.
type Volumes struct {
	Mounts     []string `json:"mounts"`
	Filesystem string   `json:"filesystem"`
}

// Archive describes where the cluster's WAL is archived.
type Archive struct {
	// Layout is "pgbackrest", "walg" or "plain".
	Layout string `json:"layout"`
	Bucket string `json:"bucket"`
	// Prefix: pgBackRest repo path (e.g. "/wal-archive/main"), WAL-G prefix, or the plain key
	// prefix that comes before the WAL file name.
	Prefix string `json:"prefix"`
	// Stanza is the pgBackRest stanza.
	Stanza string `json:"stanza,omitempty"`
	// Extension is the compression extension of a plain archive (".bz2"), if any.
	Extension string `json:"extension,omitempty"`
	// MarginSegments keeps this many segments before the boundary as well.
	MarginSegments int `json:"marginSegments,omitempty"`
	// MaxDeletesPerRun caps deletions per run (0 = default).
	MaxDeletesPerRun int `json:"maxDeletesPerRun,omitempty"`
	// SegmentSizeMiB is the WAL segment size (default 16).
	SegmentSizeMiB int `json:"segmentSizeMiB,omitempty"`
}

// Defaults.
const (
	DefaultWatchdogSeconds  = 10
	DefaultStateDir         = "/run/pgfleet"
	DefaultRoleTag          = "pgfleet:role"
	DefaultMaxDeletesPerRun = 200000
)

// DefaultProtectPaths are the SSM agent's state and logs: never frozen.
var DefaultProtectPaths = []string{"/var/lib/amazon/ssm", "/var/log/amazon/ssm"}

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	versionRE = regexp.MustCompile(`^1[0-9]$`)
)

// Parse reads one cluster document strictly (unknown fields are errors: a typo must not silently
// become a default), applies defaults and validates.
func Parse(data []byte) (Cluster, error) {
	var c Cluster
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Cluster{}, fmt.Errorf("parse cluster configuration: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Cluster{}, errors.New("parse cluster configuration: trailing data after the JSON object")
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return Cluster{}, err
	}
	return c, nil
}

// ApplyDefaults fills in every optional field.
func (c *Cluster) ApplyDefaults() {
	if c.SnapshotSource == "" {
		c.SnapshotSource = "replica"
	}
	if c.Members.RoleTag == "" {
		c.Members.RoleTag = DefaultRoleTag
	}
	if c.Postgres.Port == 0 {
		c.Postgres.Port = 5432
	}
	if c.Postgres.BinDir == "" && c.Postgres.Version != "" {
		c.Postgres.BinDir = "/usr/lib/postgresql/" + c.Postgres.Version + "/bin"
	}
	if c.Postgres.OSUser == "" {
		c.Postgres.OSUser = "postgres"
	}
	if c.Postgres.SocketDir == "" {
		c.Postgres.SocketDir = "/var/run/postgresql"
	}
	if c.Volumes.Filesystem == "" {
		c.Volumes.Filesystem = "auto"
	}
	if c.Consistency == "" {
		c.Consistency = "freeze"
	}
	if c.WatchdogSeconds == 0 {
		c.WatchdogSeconds = DefaultWatchdogSeconds
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	// The SSM agent's directories are always protected: paths given in the document add to them.
	for _, p := range DefaultProtectPaths {
		if !slices.Contains(c.ProtectPaths, p) {
			c.ProtectPaths = append(c.ProtectPaths, p)
		}
	}
	if c.Archive != nil {
		if c.Archive.SegmentSizeMiB == 0 {
			c.Archive.SegmentSizeMiB = 16
		}
		if c.Archive.MaxDeletesPerRun == 0 {
			c.Archive.MaxDeletesPerRun = DefaultMaxDeletesPerRun
		}
	}
}

// Validate returns every problem at once, each phrased as what to fix.
func (c Cluster) Validate() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }

	if !nameRE.MatchString(c.Name) {
		bad("name %q: use 1-63 lowercase letters, digits and dashes, starting with a letter or digit", c.Name)
	}
	if len(c.Members.Tags) == 0 {
		bad("members.tags: give at least one tag that all instances of the cluster carry, e.g. {\"pgfleet:cluster\": %q}", c.Name)
	}
	for k, v := range c.Members.Tags {
		if k == "" || v == "" {
			bad("members.tags: empty tag key or value (%q=%q)", k, v)
		}
	}
	switch c.SnapshotSource {
	case "replica", "primary":
	default:
		bad("snapshotSource %q: use \"replica\" (default) or \"primary\"", c.SnapshotSource)
	}
	if !versionRE.MatchString(c.Postgres.Version) {
		bad("postgres.version %q: give the major version, e.g. \"15\"", c.Postgres.Version)
	}
	if !hostPath(c.Postgres.PGData) {
		bad("postgres.pgdata %q: give the absolute data directory, e.g. /var/lib/postgresql/15/main, as %s", c.Postgres.PGData, hostscripts.PathRule)
	}
	if c.Postgres.Port < 1 || c.Postgres.Port > 65535 {
		bad("postgres.port %d: use 1-65535", c.Postgres.Port)
	}
	if !hostPath(c.Postgres.BinDir) {
		bad("postgres.binDir %q: give the directory of psql as %s", c.Postgres.BinDir, hostscripts.PathRule)
	}
	if !hostPath(c.Postgres.SocketDir) {
		bad("postgres.socketDir %q: give the Unix socket directory as %s", c.Postgres.SocketDir, hostscripts.PathRule)
	}
	if !hostscripts.ValidUser(c.Postgres.OSUser) {
		bad("postgres.osUser %q: give the OS user that owns PostgreSQL (lowercase letters, digits, _ and -, at most 32)", c.Postgres.OSUser)
	}
	if len(c.Volumes.Mounts) == 0 {
		bad("volumes.mounts: list the data mount points (every filesystem PGDATA, pg_wal and tablespaces live on)")
	}
	seen := map[string]bool{}
	for _, m := range c.Volumes.Mounts {
		switch {
		case m == "/":
			bad("volumes.mounts: \"/\" can never be frozen; put PostgreSQL data on its own volume")
		case !hostPath(m):
			bad("volumes.mounts: %q: give each mount point as %s", m, hostscripts.PathRule)
		case seen[m]:
			bad("volumes.mounts: %q is listed twice", m)
		}
		seen[m] = true
	}
	if len(c.Volumes.Mounts) > 0 && absClean(c.Postgres.PGData) && !underAny(c.Postgres.PGData, c.Volumes.Mounts) {
		bad("postgres.pgdata %q is on none of volumes.mounts %v: the snapshot would not contain it", c.Postgres.PGData, c.Volumes.Mounts)
	}
	switch c.Volumes.Filesystem {
	case "auto", "ext4", "xfs", "zfs":
	default:
		bad("volumes.filesystem %q: use auto, ext4, xfs or zfs", c.Volumes.Filesystem)
	}
	switch c.Consistency {
	case "freeze", "crash":
	default:
		bad("consistency %q: use \"freeze\" (default) or \"crash\"", c.Consistency)
	}
	if c.WatchdogSeconds < 1 || c.WatchdogSeconds > 300 {
		bad("watchdogSeconds %d: use 1-300 (a frozen filesystem is an outage; 10 is the default)", c.WatchdogSeconds)
	}
	if !hostPath(c.StateDir) {
		bad("stateDir %q: give a directory that is not on a data mount, as %s", c.StateDir, hostscripts.PathRule)
	} else if underAny(c.StateDir, c.Volumes.Mounts) {
		bad("stateDir %q is on a data mount: the watchdog must not live on a filesystem it thaws", c.StateDir)
	}
	for _, p := range c.ProtectPaths {
		if !hostPath(p) {
			bad("protectPaths: %q: give each path as %s", p, hostscripts.PathRule)
		} else if underAny(p, c.Volumes.Mounts) {
			bad("protectPaths: %q is on data mount; it would be frozen", p)
		}
	}
	if err := c.Retention.Validate(); err != nil {
		bad("%v", err)
	}
	if c.Archive != nil {
		errs = append(errs, c.Archive.problems()...)
	}
	if len(errs) > 0 {
		return fmt.Errorf("cluster %q configuration is invalid:\n  - %s", c.Name, strings.Join(errs, "\n  - "))
	}
	return nil
}

func (a Archive) problems() []string {
	var errs []string
	switch a.Layout {
	case "pgbackrest":
		if a.Stanza == "" {
			errs = append(errs, "archive.stanza: give the pgBackRest stanza (e.g. \"main\")")
		}
	case "walg", "plain":
	default:
		errs = append(errs, fmt.Sprintf("archive.layout %q: use pgbackrest, walg or plain", a.Layout))
	}
	if a.Bucket == "" {
		errs = append(errs, "archive.bucket: give the S3 bucket of the WAL archive")
	}
	switch a.Extension {
	case "", ".gz", ".lz4", ".zst", ".bz2", ".xz":
	default:
		errs = append(errs, fmt.Sprintf("archive.extension %q: use one of .gz .lz4 .zst .bz2 .xz or leave empty", a.Extension))
	}
	if a.MarginSegments < 0 {
		errs = append(errs, "archive.marginSegments must not be negative")
	}
	if a.MaxDeletesPerRun < 0 {
		errs = append(errs, "archive.maxDeletesPerRun must not be negative")
	}
	switch a.SegmentSizeMiB {
	case 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024:
	default:
		errs = append(errs, fmt.Sprintf("archive.segmentSizeMiB %d: use a power of two from 1 to 1024", a.SegmentSizeMiB))
	}
	return errs
}

// Watchdog returns the watchdog timeout as a duration.
func (c Cluster) Watchdog() time.Duration { return time.Duration(c.WatchdogSeconds) * time.Second }

func absClean(p string) bool { return p != "" && path.IsAbs(p) && path.Clean(p) == p }

// hostPath reports whether p is a clean absolute path the host scripts accept: configuration
// that validates never builds a host-script argument the scripts refuse.
func hostPath(p string) bool { return absClean(p) && hostscripts.ValidPath(p) }

func underAny(p string, mounts []string) bool {
	for _, m := range mounts {
		if p == m || strings.HasPrefix(p, strings.TrimSuffix(m, "/")+"/") {
			return true
		}
	}
	return false
}
