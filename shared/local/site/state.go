// Package site is the local site: pgfleet's ports implemented on one Linux machine. A host is a
// real PostgreSQL 15 whose data lives on loop-mounted filesystem images; a snapshot is a block
// copy of those images taken while frozen (what EBS does); host scripts run with bash, exactly
// the scripts SSM runs in AWS; S3 and DynamoDB come from moto_server. `make demo`, `make invoke`
// and the end-to-end tests run the real handlers against it.
package site

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// StateFile is the name of the file describing a running site, inside its root.
const StateFile = "site.json"

// Volume is one data volume of a local host: a filesystem image mounted through a loop device.
type Volume struct {
	// VolumeID is the image path: the freeze script reports the loop device's backing file as
	// the volume id, which is how a mount maps back to its volume (nvme serial on EBS).
	VolumeID   string `json:"volumeId"`
	Device     string `json:"device"`
	MountPoint string `json:"mountPoint"`
	FSType     string `json:"fstype"`
	SizeMiB    int    `json:"sizeMiB"`
	Loop       string `json:"loop,omitempty"`
}

// Host is one local "instance".
type Host struct {
	InstanceID string            `json:"instanceId"`
	Role       string            `json:"role"`
	State      string            `json:"state"`
	Tags       map[string]string `json:"tags"`
	Dir        string            `json:"dir"`
	PGData     string            `json:"pgdata"`
	Port       int               `json:"port"`
	SocketDir  string            `json:"socketDir"`
	Volumes    []Volume          `json:"volumes"`
}

// State describes a running site; it is written to <Root>/site.json.
type State struct {
	Root       string `json:"root"`
	Cluster    string `json:"cluster"`
	ConfigDir  string `json:"configDir"`
	MotoURL    string `json:"motoUrl"`
	MotoPID    int    `json:"motoPid,omitempty"`
	S3TLSPort  int    `json:"s3TlsPort"`
	ProxyPID   int    `json:"proxyPid,omitempty"`
	Bucket     string `json:"bucket"`
	RepoPath   string `json:"repoPath"`
	Stanza     string `json:"stanza"`
	PgBackRest string `json:"pgbackrestConfig"`
	LeaseTable string `json:"leaseTable"`
	// ReplicationSecret names the SecureString parameter holding the replication password (the
	// value is never stored here).
	ReplicationSecret string `json:"replicationSecretParameter,omitempty"`
	Hosts             []Host `json:"hosts"`

	mu sync.Mutex
}

// SnapshotDir is where local snapshots live.
func (s *State) SnapshotDir() string { return filepath.Join(s.Root, "snapshots") }

// Host finds a host by instance id.
func (s *State) Host(instanceID string) (Host, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.Hosts {
		if h.InstanceID == instanceID {
			return h, true
		}
	}
	return Host{}, false
}

// AddHost records a host (used by launches and restores).
func (s *State) AddHost(h Host) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Hosts = append(s.Hosts, h)
}

// Save writes the state file.
func (s *State) Save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode site state: %w", err)
	}
	tmp := filepath.Join(s.Root, StateFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write site state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(s.Root, StateFile))
}

// Load reads the state file of the site at root.
func Load(root string) (*State, error) {
	data, err := os.ReadFile(filepath.Join(root, StateFile))
	if err != nil {
		return nil, fmt.Errorf("no local site at %s (start one with `make site-up`): %w", root, err)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(root, StateFile), err)
	}
	return &s, nil
}
