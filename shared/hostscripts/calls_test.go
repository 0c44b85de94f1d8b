package hostscripts_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/pgfleet/pgfleet/shared/fleet/fleetfake"
	"github.com/pgfleet/pgfleet/shared/hostscripts"
)

// runnerFunc answers a run with a fixed line and error, and records the arguments.
type runnerFunc struct {
	line []byte
	err  error
	args hostscripts.Args
}

func (r *runnerFunc) Run(_ context.Context, _ string, _ hostscripts.Name, args hostscripts.Args) ([]byte, error) {
	r.args = args
	return r.line, r.err
}

func line(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestRunFreezeOutcomes(t *testing.T) {
	frozen := hostscripts.MountResult{Path: "/data", FSType: "xfs", Frozen: true}
	exit1 := errors.New("exit status 1")
	tests := []struct {
		name    string
		line    []byte
		err     error
		want    hostscripts.Outcome
		wantErr string // "" means success
	}{
		{name: "frozen", line: line(fleetfake.FreezeOK(2_000_000, frozen))},
		{name: "lost", err: errors.New("InvocationDoesNotExist"), want: hostscripts.Unknown, wantErr: "InvocationDoesNotExist"},
		{name: "no line, no error", want: hostscripts.Unknown, wantErr: "no result line"},
		{name: "line of another version", line: []byte(`{"ok":true,"action":"freeze","surprise":1}`), want: hostscripts.Unknown, wantErr: "unknown field"},
		{name: "ok, yet the command failed", line: line(fleetfake.FreezeOK(2_000_000, frozen)), err: exit1, want: hostscripts.Unknown, wantErr: "command failed"},
		{name: "refused", line: line(fleetfake.FreezeFailed(2_000_000, "already frozen by pgfleet")), err: exit1, want: hostscripts.Refused, wantErr: "freeze refused: already frozen"},
		{name: "failed with a mount still frozen", line: line(fleetfake.FreezeFailed(2_000_000, "fsfreeze -f failed", "/data")), err: exit1, want: hostscripts.StillFrozen, wantErr: "still frozen: /data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &runnerFunc{line: tc.line, err: tc.err}
			fr, err := hostscripts.RunFreeze(context.Background(), r, "i-1", hostscripts.FreezeParams{PGData: "/data/pg", Mounts: []string{"/data", "/wal"}, WatchdogSeconds: 12})
			if tc.wantErr == "" {
				if err != nil || !fr.OK {
					t.Fatalf("RunFreeze = %+v, %v", fr, err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) || hostscripts.OutcomeOf(err) != tc.want {
				t.Fatalf("RunFreeze error %v (outcome %s); want %q, outcome %s", err, hostscripts.OutcomeOf(err), tc.wantErr, tc.want)
			}
			if got := r.args; got["mounts"] != "/data,/wal" || got["watchdog-seconds"] != "12" || len(got) != 3 {
				t.Errorf("args %v: want pgdata, mounts and watchdog-seconds only", got)
			}
		})
	}
}

func TestRunThawOutcomes(t *testing.T) {
	noProbe := fleetfake.ThawOK(2_000_000, "/data")
	noProbe.ProbeOK = false
	fired := fleetfake.ThawFailed(2_000_000, "lock held", "/data")
	fired.WatchdogFiredToken, fired.WatchdogFiredUS = "1-2", 1_999_000
	tests := []struct {
		name      string
		line      []byte
		err       error
		params    hostscripts.ThawParams
		want      hostscripts.Outcome
		wantErr   string
		wantFired string
	}{
		{name: "thawed", line: line(fleetfake.ThawOK(2_000_000, "/data"))},
		{name: "lost", err: errors.New("Undeliverable"), want: hostscripts.Unknown, wantErr: "Undeliverable"},
		{name: "could not thaw, and says a watchdog fired", line: line(fired), err: errors.New("exit status 1"), want: hostscripts.StillFrozen, wantErr: "lock held", wantFired: "1-2"},
		{name: "probe did not finish", line: line(noProbe), want: hostscripts.StillFrozen, wantErr: "write probe"},
		{name: "probe not asked for", line: line(noProbe), params: hostscripts.ThawParams{NoProbe: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.params
			p.Mounts = []string{"/data"}
			r := &runnerFunc{line: tc.line, err: tc.err}
			tr, err := hostscripts.RunThaw(context.Background(), r, "i-1", p)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("RunThaw = %+v, %v", tr, err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) || hostscripts.OutcomeOf(err) != tc.want {
				t.Fatalf("RunThaw error %v (outcome %s); want %q, outcome %s", err, hostscripts.OutcomeOf(err), tc.wantErr, tc.want)
			}
			if tr.WatchdogFiredToken != tc.wantFired {
				t.Errorf("watchdog fired token %q, want %q (a failed thaw's line still counts)", tr.WatchdogFiredToken, tc.wantFired)
			}
			if (r.args["probe"] == "no") != p.NoProbe {
				t.Errorf("args %v with NoProbe %v", r.args, p.NoProbe)
			}
		})
	}
}
