// Package testutil holds helpers shared by the project's tests: the loud skip that CI turns into
// a failure, and small waits with bounds.
package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// Strict reports whether skips must become failures (CI=true or PGFLEET_STRICT=1).
func Strict() bool {
	return os.Getenv("CI") == "true" || os.Getenv("PGFLEET_STRICT") == "1"
}

// SkipOrFail skips the test with a loud message, or fails it when running in CI, where a skipped
// test must never pass as green.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if Strict() {
		t.Fatalf("REQUIRED TEST CANNOT RUN (CI=true): "+format, args...)
	}
	t.Logf("!!!!!!!! SKIPPED: "+format, args...)
	t.SkipNow()
}

// RequireRoot needs root and loop devices (fsfreeze, losetup, mount).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root for loop devices, mount and fsfreeze; run as root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		SkipOrFail(t, "needs /dev/loop-control for loop-mounted filesystem images: %v", err)
	}
}

// RequireBinary needs an executable on PATH or at an absolute path.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		SkipOrFail(t, "needs %s (make test installs it): %v", name, err)
	}
	return p
}
