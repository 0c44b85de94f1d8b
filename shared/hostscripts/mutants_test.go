package hostscripts_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pgfleet/pgfleet/shared/hostscripts"
)

// A mutant breaks one safety-critical line of a host script the way a careless edit would, and
// names the test that must then fail. TestMutantsAreCaught runs each named test against its
// mutant: a mutant that survives is a safety rule no test holds.
type mutant struct {
	name   string
	script hostscripts.Name
	test   string
	apply  func(src string) (string, error)
}

// mutantEnv names the mutant newHost applies to the scripts it writes.
const mutantEnv = "PGFLEET_HOSTSCRIPT_MUTANT"

func replaceOnce(old, new string) func(string) (string, error) {
	return func(src string) (string, error) {
		if n := strings.Count(src, old); n != 1 {
			return "", fmt.Errorf("the text to break is there %d times, want once: %q", n, old)
		}
		return strings.Replace(src, old, new, 1), nil
	}
}

// moveBlock cuts the lines from the one starting with from up to the one starting with to
// (excluded) and pastes them before the line starting with before.
func moveBlock(from, to, before string) func(string) (string, error) {
	return func(src string) (string, error) {
		i, j := strings.Index(src, "\n"+from), strings.Index(src, "\n"+to)
		if i < 0 || j < i {
			return "", fmt.Errorf("block %q..%q not found", from, to)
		}
		block := src[i+1 : j+1]
		rest := src[:i+1] + src[j+1:]
		k := strings.Index(rest, "\n"+before)
		if k < 0 {
			return "", fmt.Errorf("%q not found", before)
		}
		return rest[:k+1] + block + rest[k+1:], nil
	}
}

var mutants = []mutant{
	{"thaw without the lock", hostscripts.Thaw, "TestThawDuringSlowFreezeWaitsForIt",
		replaceOnce(`if ! take_lock "$opt_state_dir" "$THAW_LOCK_WAIT_SECONDS"; then`, `if ! true; then`)},
	{"freeze without the lock", hostscripts.Freeze, "TestThawDuringSlowFreezeWaitsForIt",
		replaceOnce(`take_lock "$STATE_DIR" "$FREEZE_LOCK_WAIT_SECONDS" ||`, `true ||`)},
	{"fsfreeze -f does not hold the lock", hostscripts.Freeze, "TestThawWaitsForAFreezeKilledMidFreeze",
		replaceOnce(`fsfreeze -f "$m" 2>&4 3>&- 4>&- &`, `fsfreeze -f "$m" 2>&4 3>&- 4>&- 9>&- &`)},
	{"watchdog fires without the lock", hostscripts.Freeze, "TestWatchdogWaitsForAFreezeKilledMidFreeze",
		replaceOnce(`if ! flock -w "$lock_wait" 9; then`, `if false; then`)},
	{"watchdog counts from arming", hostscripts.Freeze, "TestWatchdogCountsFromTheFreeze",
		replaceOnce("\tif go_time; then\n\t\tstart=$REPLY\n", "\tif true; then\n\t\tclock_us; start=$REPLY\n")},
	{"no watchdog check after the freeze", hostscripts.Freeze, "TestFreezeFailsWhenTheWatchdogDiesDuringTheFreeze",
		replaceOnce(`if [[ $REPLY != armed && $REPLY != counting ]] || ! proc_alive "$WATCHDOG_PID" || ! watchdog_is_ours "$WATCHDOG_PID" "$TOKEN"; then`, `if false; then`)},
	{"failed freeze always says nothing is frozen", hostscripts.Freeze, "TestFreezeReportsWhatIsStillFrozen",
		replaceOnce(`if ((${#STILL_FROZEN[@]} > 0)); then frozen=true; fi`, `STILL_FROZEN=()`)},
	{"watchdog armed after fsfreeze -f", hostscripts.Freeze, "TestWatchdogIsArmedBeforeEveryFreeze",
		moveBlock("# shellcheck disable=SC2016\nWATCHDOG_SRC=", "FROZE=false", "# The watchdog's countdown starts now")},
	{"watchdog started without setsid", hostscripts.Freeze, "TestWatchdogOutlivesTheCommandsProcessGroup",
		replaceOnce(`setsid nohup bash -c "$WATCHDOG_SRC"`, `nohup bash -c "$WATCHDOG_SRC"`)},
	{"no check that the watchdog started", hostscripts.Freeze, "TestFreezeRefusesWithoutAWatchdog",
		moveBlock("# The watchdog must be running this freeze's code", "FROZE=false", "# h) The result.")},
	{"thaw disarms after a failed unfreeze", hostscripts.Thaw, "TestThawKeepsTheWatchdogWhenAnUnfreezeFails",
		replaceOnce(`if [[ -z $ERRORS ]]; then`, `if true; then`)},
	{"/ refused by path only, not by device", hostscripts.Freeze, "TestRootIsRefusedByDevice",
		replaceOnce(`if [[ $FS_TARGET == / || $FS_MAJMIN == "$ROOT_MAJMIN" ]]; then`, `if [[ $FS_TARGET == / ]]; then`)},
}

// mutate applies the mutant named in the environment to script n's source.
func mutate(t testing.TB, n hostscripts.Name, src string) string {
	name := os.Getenv(mutantEnv)
	if name == "" {
		return src
	}
	for _, m := range mutants {
		if m.name != name {
			continue
		}
		if m.script != n {
			return src
		}
		out, err := m.apply(src)
		if err != nil {
			t.Fatalf("mutant %q: %v", name, err)
		}
		t.Logf("running against mutant %q", name)
		return out
	}
	t.Fatalf("unknown mutant %q", name)
	return ""
}

func TestMutantsAreCaught(t *testing.T) {
	if os.Getenv(mutantEnv) != "" {
		t.Skip("running inside a mutant run")
	}
	requireHost(t)
	for _, m := range mutants {
		t.Run(m.name, func(t *testing.T) {
			src, err := hostscripts.Source(m.script)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.apply(src); err != nil {
				t.Fatalf("the mutant no longer applies (the script changed; update it): %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run", "^"+m.test+"$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), mutantEnv+"="+m.name, "CI=true")
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Errorf("mutant %q survived: %s passes with it\n%s", m.name, m.test, out)
				return
			}
			if !strings.Contains(string(out), "--- FAIL: "+m.test) {
				t.Errorf("%s against mutant %q did not fail as a test (%v):\n%s", m.test, m.name, err, out)
				return
			}
			t.Logf("caught by %s", m.test)
		})
	}
}
