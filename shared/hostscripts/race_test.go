package hostscripts_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgfleet/pgfleet/shared/hostscripts"
)

// These tests open the race windows of invariant 1 on purpose, with real fsfreeze slowed down or
// made to fail by a wrapper script on PATH, and check that the host is never left frozen without
// an armed watchdog, whatever the interleaving.

// wrapTools puts wrapper scripts in front of PATH for the scripts this host runs (and the
// watchdog they start). Each body runs after `real=<path of the real tool>` is set; an empty
// body is not allowed. It returns the wrapper directory.
func (h *host) wrapTools(t *testing.T, bodies map[string]string) string {
	t.Helper()
	bin, err := os.MkdirTemp(h.base, "wrap-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range bodies {
		real, err := exec.LookPath(name)
		if err != nil {
			t.Fatal(err)
		}
		script := fmt.Sprintf("#!/usr/bin/env bash\nreal=%q\n%s\n", real, body)
		if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h.env = []string{"PATH=" + bin + ":" + os.Getenv("PATH")}
	t.Cleanup(func() { h.env = nil })
	return bin
}

// running is a host script started in the background.
type running struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   chan error
}

// start runs a script in the background, in its own process group (as the SSM agent runs a
// command).
func (h *host) start(t *testing.T, script string, n hostscripts.Name, args hostscripts.Args) *running {
	t.Helper()
	argv, err := args.Argv(n)
	if err != nil {
		t.Fatal(err)
	}
	r := &running{done: make(chan error, 1)}
	r.cmd = exec.Command("bash", append([]string{script}, argv...)...)
	r.cmd.Env = append(os.Environ(), h.env...)
	r.cmd.Dir = "/"
	r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r.cmd.WaitDelay = 2 * time.Second
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.done
	})
	return r
}

// wait waits for the script (bounded), then decodes its result line into res.
func (r *running) wait(t *testing.T, n hostscripts.Name, d time.Duration, res any) int {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("%s: %v\nstderr:\n%s", n, err, r.stderr.String())
		}
	case <-time.After(d):
		t.Fatalf("%s still running after %s\nstderr so far:\n%s", n, d, r.stderr.String())
	}
	line, err := hostscripts.LastJSONLine(r.stdout.Bytes())
	if err != nil {
		t.Fatalf("%s: %v\nstderr:\n%s", n, err, r.stderr.String())
	}
	if strings.TrimSpace(r.stdout.String()) != string(line) {
		t.Errorf("%s printed more than its result line: %q", n, r.stdout.String())
	}
	decodeResult(t, n, line, res, r.stderr.String())
	return r.cmd.ProcessState.ExitCode()
}

// waitFor polls cond every 10 ms until it holds or d has passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// slowFreeze delays every fsfreeze -f by the given seconds (the kernel flushing a big dirty
// cache to throttled EBS) and logs every call, and its end ("done <args> <status>"), to the
// returned file.
func (h *host) slowFreeze(t *testing.T, seconds string) (calls string) {
	t.Helper()
	calls = filepath.Join(h.base, "fsfreeze.calls")
	_ = os.Remove(calls)
	h.wrapTools(t, map[string]string{"fsfreeze": fmt.Sprintf(`echo "$*" >>%[1]q
if [ "$1" = -f ]; then sleep %[2]s; fi
"$real" "$@"
rc=$?
echo "done $* $rc" >>%[1]q
exit $rc`, calls, seconds)})
	return calls
}

// TestThawDuringSlowFreezeWaitsForIt: the orchestrator's freeze command timed out, so it sends a
// thaw while freeze.sh is still in its (slow) fsfreeze -f. The thaw must wait for the freeze and
// then thaw; it must never find "nothing frozen", disarm the watchdog and leave the freeze to
// complete on a host nobody will thaw.
func TestThawDuringSlowFreezeWaitsForIt(t *testing.T) {
	h := newHost(t, hostOptions{})
	h.slowFreeze(t, "1.5")
	freeze := h.start(t, h.freeze, hostscripts.Freeze, h.freezeArgs()) // watchdog 30 s
	// The freeze wrote its record and armed its watchdog: it is in fsfreeze -f now.
	waitFor(t, 20*time.Second, "freeze record", func() bool { return h.exists(h.record()) })
	time.Sleep(100 * time.Millisecond)

	var tr hostscripts.ThawResult
	code, took := h.run(t, h.thaw, hostscripts.Thaw, h.thawArgs(), &tr)
	t.Logf("thaw took %s: %+v", took.Round(time.Millisecond), tr)
	var fr hostscripts.FreezeResult
	if c := freeze.wait(t, hostscripts.Freeze, 30*time.Second, &fr); c != 0 || !fr.OK || !fr.Frozen {
		t.Fatalf("freeze: exit %d %+v", c, fr)
	}
	if code != 0 || !tr.OK || len(tr.Thawed) != 2 || !tr.WatchdogDisarmed || len(tr.StillFrozen) != 0 {
		t.Errorf("thaw: exit %d %+v; want both mounts thawed after the freeze, watchdog disarmed", code, tr)
	}
	if tr.ThawStartedUS < fr.FrozenUS {
		t.Errorf("thaw started unfreezing at %d, before the freeze completed at %d", tr.ThawStartedUS, fr.FrozenUS)
	}
	// Nothing frozen now, long before the 30 s watchdog.
	h.assertUntouched(t)
}

// TestWatchdogCountsFromTheFreeze: the flush inside fsfreeze -f takes longer than the watchdog's
// time. The watchdog must not fire before the freeze (it would thaw nothing, drop standby.signal
// and leave): it counts from the moment the mounts are frozen.
func TestWatchdogCountsFromTheFreeze(t *testing.T) {
	h := newHost(t, hostOptions{})
	h.slowFreeze(t, "2.5")
	args := h.freezeArgs()
	args["watchdog-seconds"] = "1"
	fr := h.doFreeze(t, args)
	frozenAt := time.Now()
	ws := h.writers()
	if !fr.Frozen || fr.WatchdogDeadlineUS < fr.FrozenUS+1_000_000 {
		t.Errorf("frozen %v, watchdog deadline %d; want at least 1 s after frozen_us %d", fr.Frozen, fr.WatchdogDeadlineUS, fr.FrozenUS)
	}
	if !alive(fr.WatchdogPID) || !h.exists(h.standbySignal()) || !h.exists(h.record()) {
		t.Fatalf("right after a slow freeze: watchdog %d alive %v, standby.signal %v, record %v; want all (the snapshot needs standby.signal, the host a watchdog)",
			fr.WatchdogPID, alive(fr.WatchdogPID), h.exists(h.standbySignal()), h.exists(h.record()))
	}
	assertBlocked(t, ws, 300*time.Millisecond)
	// No thaw comes: the watchdog releases the host about 1 s after the freeze.
	assertDone(t, ws, 5*time.Second)
	if took := time.Since(frozenAt); took < 500*time.Millisecond {
		t.Errorf("released %s after the freeze returned; the watchdog fired early", took)
	}
	waitFor(t, 3*time.Second, "watchdog done", func() bool { return !alive(fr.WatchdogPID) })
	h.assertUntouched(t)
	var tr hostscripts.ThawResult
	if code, _ := h.run(t, h.thaw, hostscripts.Thaw, h.thawArgs(), &tr); code != 0 || !tr.WatchdogFired(fr) || len(tr.Thawed) != 0 {
		t.Errorf("late thaw: exit %d, %+v; want it to report that this freeze's watchdog fired (token %s)", code, tr, fr.Token)
	}
}

// TestFreezeFailsWhenTheWatchdogDiesDuringTheFreeze: freeze.sh checks, after freezing, that its
// watchdog is still armed; when it is not, it thaws at once and fails.
func TestFreezeFailsWhenTheWatchdogDiesDuringTheFreeze(t *testing.T) {
	h := newHost(t, hostOptions{})
	calls := filepath.Join(h.base, "fsfreeze.calls")
	// The first fsfreeze -f kills the watchdog (an OOM kill, an operator's pkill) and freezes.
	h.wrapTools(t, map[string]string{"fsfreeze": fmt.Sprintf(`echo "$*" >>%q
if [ "$1" = -f ] && [ ! -e %[2]q ]; then
	: >%[2]q
	pkill -KILL -f 'pgfleet-watchdog .*%[3]s' || true
fi
exec "$real" "$@"`, calls, filepath.Join(h.base, "killed"), h.stateDir)})
	var fr hostscripts.FreezeResult
	code, _ := h.run(t, h.freeze, hostscripts.Freeze, h.freezeArgs(), &fr)
	if code == 0 || fr.OK || fr.Frozen || len(fr.StillFrozen) != 0 || !strings.Contains(fr.Error, "watchdog") {
		t.Fatalf("exit %d, %+v; want a failure naming the watchdog, nothing still frozen", code, fr)
	}
	if b, _ := os.ReadFile(calls); !strings.Contains(string(b), "-u "+h.data.Path) || !strings.Contains(string(b), "-u "+h.wal.Path) {
		t.Errorf("fsfreeze calls %q; want both mounts thawed at once", b)
	}
	h.assertUntouched(t)
}

// TestFreezeReportsWhatIsStillFrozen: a freeze that fails and cannot undo its own freeze says so
// (frozen, still_frozen), so the orchestrator sends a thaw; its watchdog stays armed.
func TestFreezeReportsWhatIsStillFrozen(t *testing.T) {
	h := newHost(t, hostOptions{})
	// -f on the WAL mount fails; -u on the data mount fails with EIO (not "not frozen").
	h.wrapTools(t, map[string]string{"fsfreeze": fmt.Sprintf(`if [ "$1" = -f ] && [ "$2" = %[1]q ]; then
	echo "fsfreeze: %[1]s: freeze failed: Device or resource busy" >&2; exit 1
fi
if [ "$1" = -u ] && [ "$2" = %[2]q ]; then
	echo "fsfreeze: %[2]s: unfreeze failed: Input/output error" >&2; exit 1
fi
exec "$real" "$@"`, h.wal.Path, h.data.Path)})
	var fr hostscripts.FreezeResult
	code, _ := h.run(t, h.freeze, hostscripts.Freeze, h.freezeArgs(), &fr)
	ws := []<-chan error{startWrite(h.data.Path)}
	if code == 0 || fr.OK || !fr.Frozen || len(fr.StillFrozen) != 1 || fr.StillFrozen[0] != h.data.Path || fr.Token == "" {
		t.Fatalf("exit %d, %+v; want a failure that says %s is still frozen", code, fr, h.data.Path)
	}
	assertBlocked(t, ws, 300*time.Millisecond)
	if w := h.watchdogs(); len(w) != 1 || !h.exists(h.record()) {
		t.Errorf("watchdogs %v, record %v; want the watchdog armed and the record kept while a mount is frozen", w, h.exists(h.record()))
	}
	h.env = nil
	tr := h.doThaw(t, h.thawArgs())
	if len(tr.Thawed) != 1 || tr.Thawed[0] != h.data.Path || !tr.WatchdogDisarmed {
		t.Errorf("thaw %+v", tr)
	}
	assertDone(t, ws, 5*time.Second)
	h.assertUntouched(t)
}

// TestThawKeepsTheWatchdogWhenAnUnfreezeFails: a thaw that cannot unfreeze a mount reports it
// still frozen and disarms nothing: the watchdog, the record and standby.signal stay.
func TestThawKeepsTheWatchdogWhenAnUnfreezeFails(t *testing.T) {
	h := newHost(t, hostOptions{})
	fr := h.doFreeze(t, h.freezeArgs())
	h.wrapTools(t, map[string]string{"fsfreeze": fmt.Sprintf(`if [ "$1" = -u ] && [ "$2" = %[1]q ]; then
	echo "fsfreeze: %[1]s: unfreeze failed: Input/output error" >&2; exit 1
fi
exec "$real" "$@"`, h.wal.Path)})
	var tr hostscripts.ThawResult
	code, _ := h.run(t, h.thaw, hostscripts.Thaw, h.thawArgs(), &tr)
	if code == 0 || tr.OK || len(tr.StillFrozen) != 1 || tr.StillFrozen[0] != h.wal.Path || tr.WatchdogDisarmed {
		t.Fatalf("exit %d, %+v; want a failure with %s still frozen and the watchdog armed", code, tr, h.wal.Path)
	}
	if !alive(fr.WatchdogPID) || !h.exists(h.record()) || !h.exists(h.standbySignal()) {
		t.Errorf("watchdog alive %v, record %v, standby.signal %v; want all kept", alive(fr.WatchdogPID), h.exists(h.record()), h.exists(h.standbySignal()))
	}
	h.env = nil
	tr = h.doThaw(t, h.thawArgs())
	if len(tr.Thawed) != 1 || !tr.WatchdogDisarmed || !tr.StandbySignalRemoved {
		t.Errorf("second thaw %+v", tr)
	}
	h.assertUntouched(t)
}

// TestWatchdogIsArmedBeforeEveryFreeze: at each fsfreeze -f, a watchdog of this host is running
// and has said it is armed.
func TestWatchdogIsArmedBeforeEveryFreeze(t *testing.T) {
	h := newHost(t, hostOptions{})
	calls := filepath.Join(h.base, "fsfreeze.calls")
	h.wrapTools(t, map[string]string{"fsfreeze": fmt.Sprintf(`if [ "$1" = -f ]; then
	if pgrep -f 'pgfleet-watchdog .*%[2]s' >/dev/null && grep -q ' armed$' %[3]q; then
		echo "-f $2 watchdog=armed" >>%[1]q
	else
		echo "-f $2 watchdog=none" >>%[1]q
	fi
fi
exec "$real" "$@"`, calls, h.stateDir, filepath.Join(h.stateDir, "watchdog.state"))})
	fr := h.doFreeze(t, h.freezeArgs())
	h.doThaw(t, h.thawArgs())
	b, _ := os.ReadFile(calls)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 {
		t.Fatalf("fsfreeze -f calls %q; want 2", b)
	}
	for _, l := range lines {
		if !strings.HasSuffix(l, "watchdog=armed") {
			t.Errorf("%s: a mount was frozen with no armed watchdog (freeze %+v)", l, fr)
		}
	}
	h.assertUntouched(t)
}

// TestWatchdogOutlivesTheCommandsProcessGroup: when a command ends, times out or is cancelled,
// the SSM agent kills its process group. The watchdog runs in its own session and must survive
// that, then thaw at its deadline.
func TestWatchdogOutlivesTheCommandsProcessGroup(t *testing.T) {
	h := newHost(t, hostOptions{})
	args := h.freezeArgs()
	args["watchdog-seconds"] = "2"
	r := h.start(t, h.freeze, hostscripts.Freeze, args)
	var fr hostscripts.FreezeResult
	if code := r.wait(t, hostscripts.Freeze, 30*time.Second, &fr); code != 0 || !fr.Frozen {
		t.Fatalf("freeze: exit %d %+v", code, fr)
	}
	ws := h.writers()
	// What the agent does: kill -9 the command's whole process group.
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	time.Sleep(100 * time.Millisecond)
	if !alive(fr.WatchdogPID) {
		t.Fatalf("the watchdog %d died with the command's process group: nothing would thaw the host", fr.WatchdogPID)
	}
	assertBlocked(t, ws, 300*time.Millisecond)
	assertDone(t, ws, 6*time.Second)
	waitFor(t, 3*time.Second, "watchdog done", func() bool { return !alive(fr.WatchdogPID) })
	h.assertUntouched(t)
}

// TestFreezeRefusesWithoutAWatchdog: when the watchdog cannot be started, nothing is frozen at
// all, not even for a moment.
func TestFreezeRefusesWithoutAWatchdog(t *testing.T) {
	h := newHost(t, hostOptions{})
	calls := filepath.Join(h.base, "fsfreeze.calls")
	h.wrapTools(t, map[string]string{
		// setsid that starts nothing (a broken util-linux, a seccomp policy).
		"setsid":   `exit 0`,
		"fsfreeze": fmt.Sprintf("echo \"$*\" >>%q\nexec \"$real\" \"$@\"", calls),
	})
	var fr hostscripts.FreezeResult
	code, _ := h.run(t, h.freeze, hostscripts.Freeze, h.freezeArgs(), &fr)
	if code == 0 || fr.OK || fr.Frozen || !strings.Contains(fr.Error, "watchdog did not start") {
		t.Fatalf("exit %d, %+v; want a refusal: the watchdog did not start", code, fr)
	}
	if b, _ := os.ReadFile(calls); strings.Contains(string(b), "-f") {
		t.Errorf("fsfreeze calls %q: a mount was frozen with no watchdog", b)
	}
	h.assertUntouched(t)
}

// TestRootIsRefusedByDevice: / mounted somewhere else (a bind mount) is still the root
// filesystem and is refused as such, whatever path names it.
func TestRootIsRefusedByDevice(t *testing.T) {
	h := newHost(t, hostOptions{})
	target := filepath.Join(h.base, "rootbind")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "mount", "--bind", "/", target).CombinedOutput(); err != nil {
		t.Fatalf("bind mount /: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", target).Run() })
	args := h.freezeArgs()
	args["mounts"] = h.mounts() + "," + target
	var fr hostscripts.FreezeResult
	code, _ := h.run(t, h.freeze, hostscripts.Freeze, args, &fr)
	if code == 0 || fr.OK || fr.Frozen || !strings.Contains(fr.Error, "refusing to freeze "+target+": it is the root filesystem") {
		t.Fatalf("exit %d, %+v; want a refusal naming %s as the root filesystem", code, fr, target)
	}
	h.assertUntouched(t)
}

// killFreezeMidFreeze starts a freeze whose fsfreeze -f is slowed down, and SIGKILLs the freeze
// script itself (not its children) once it is freezing: a command the agent killed, or a host
// out of memory. It returns once the script is dead.
func (h *host) killFreezeMidFreeze(t *testing.T, args hostscripts.Args) (calls string) {
	t.Helper()
	calls = h.slowFreeze(t, "2.5")
	r := h.start(t, h.freeze, hostscripts.Freeze, args)
	waitFor(t, 20*time.Second, "fsfreeze -f started", func() bool {
		b, _ := os.ReadFile(calls)
		return strings.Count(string(b), "-f ") == 2
	})
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.done:
		r.done <- err
	case <-time.After(10 * time.Second):
		t.Fatal("the freeze script did not die")
	}
	return calls
}

// TestThawWaitsForAFreezeKilledMidFreeze: the freeze script is killed while its fsfreeze -f
// calls run. They go on (a process in the kernel's freeze cannot be stopped) and keep the host's
// lock, so a thaw sent now waits for them and then thaws, instead of finding nothing frozen.
func TestThawWaitsForAFreezeKilledMidFreeze(t *testing.T) {
	h := newHost(t, hostOptions{})
	h.killFreezeMidFreeze(t, h.freezeArgs()) // watchdog 30 s
	tr := h.doThaw(t, h.thawArgs())
	if len(tr.Thawed) != 2 || !tr.WatchdogDisarmed {
		t.Errorf("thaw %+v; want both mounts thawed once the killed freeze's fsfreeze -f finished", tr)
	}
	h.assertUntouched(t)
}

// TestWatchdogWaitsForAFreezeKilledMidFreeze: the same kill, and no thaw ever comes. The watchdog
// starts counting when the freeze script dies, fires while fsfreeze -f still runs, waits for it
// (the lock), and only then thaws: the host ends thawed.
func TestWatchdogWaitsForAFreezeKilledMidFreeze(t *testing.T) {
	h := newHost(t, hostOptions{})
	args := h.freezeArgs()
	args["watchdog-seconds"] = "1"
	calls := h.killFreezeMidFreeze(t, args)
	t.Cleanup(func() { h.logWatchdog(t) })
	// Once the orphaned fsfreeze -f calls have frozen the mounts, writes block until the
	// watchdog thaws.
	waitFor(t, 10*time.Second, "fsfreeze -f done", func() bool {
		b, _ := os.ReadFile(calls)
		return strings.Count(string(b), "done -f ") == 2
	})
	ws := h.writers()
	assertDone(t, ws, 8*time.Second)
	waitFor(t, 5*time.Second, "watchdog done", func() bool { return len(h.watchdogs()) == 0 })
	h.assertUntouched(t)
}

// logWatchdog logs the host's watchdog log.
func (h *host) logWatchdog(t *testing.T) {
	b, _ := os.ReadFile(filepath.Join(h.stateDir, "watchdog.log"))
	t.Logf("watchdog.log:\n%s", b)
}

// TestThawThatCannotTakeTheLockChangesNothing: while something holds the host's lock for longer
// than a thaw waits (a freeze stuck in its checkpoint), the thaw fails, says which mounts the
// recorded freeze left frozen, and touches nothing: the watchdog stays armed, the caller retries.
func TestThawThatCannotTakeTheLockChangesNothing(t *testing.T) {
	h := newHost(t, hostOptions{})
	fr := h.doFreeze(t, h.freezeArgs())
	ws := h.writers()
	holder := exec.Command("flock", filepath.Join(h.stateDir, "lock"), "sleep", "120")
	holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	// flock and its sleep both hold the lock: end the whole group.
	release := func() { _ = syscall.Kill(-holder.Process.Pid, syscall.SIGKILL); _ = holder.Wait() }
	defer release()
	waitFor(t, 5*time.Second, "lock held", func() bool {
		return exec.Command("flock", "-n", filepath.Join(h.stateDir, "lock"), "true").Run() != nil
	})
	var tr hostscripts.ThawResult
	code, took := h.run(t, h.thaw, hostscripts.Thaw, h.thawArgs(), &tr)
	if code == 0 || tr.OK || !strings.Contains(tr.Error, "still holds") || len(tr.StillFrozen) != 2 {
		t.Fatalf("exit %d after %s, %+v; want a failure naming the lock, both mounts still frozen", code, took, tr)
	}
	if took < hostscripts.ThawLockWait {
		t.Errorf("the thaw gave up after %s, before its %s wait", took, hostscripts.ThawLockWait)
	}
	assertBlocked(t, ws, 200*time.Millisecond)
	if !alive(fr.WatchdogPID) || !h.exists(h.record()) || !h.exists(h.standbySignal()) {
		t.Errorf("watchdog alive %v, record %v, standby.signal %v; want all kept", alive(fr.WatchdogPID), h.exists(h.record()), h.exists(h.standbySignal()))
	}
	release()
	h.doThaw(t, h.thawArgs())
	assertDone(t, ws, 5*time.Second)
	h.assertUntouched(t)
}
