// Package moto runs moto_server, the AWS emulator the adapter tests and the local site talk to,
// and the client-side pieces that go with it: an aws.Config pointed at it, an HTTPS proxy in
// front of it for clients that speak HTTPS only (pgBackRest), and smithy middlewares that record
// calls and inject faults, since moto itself cannot fail on demand.
//
// moto's reset is global to a server, so every test (or concern) starts its own server.
package moto

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgfleet/pgfleet/shared/local/netx"
	"github.com/pgfleet/pgfleet/shared/testutil"
)

// Binary is the moto_server executable looked up on PATH.
const Binary = "moto_server"

// Backoff bounds a wait: the first pause, its growth factor, the largest pause and the total time
// allowed.
type Backoff struct {
	Initial time.Duration
	Factor  float64
	Max     time.Duration
	Timeout time.Duration
}

func (b Backoff) next(d time.Duration) time.Duration {
	n := time.Duration(float64(d) * b.Factor)
	if n > b.Max {
		n = b.Max
	}
	if n <= 0 {
		n = b.Initial
	}
	return n
}

// Options shape a started server.
type Options struct {
	// Ready is how long and how often Start polls until moto answers HTTP.
	Ready Backoff
	// StopGrace is how long Stop waits after SIGTERM before it sends SIGKILL.
	StopGrace time.Duration
	// DieWithParent has the kernel kill the server when this process dies without calling
	// Stop (a test binary that panics or times out). Leave it off for a server that must
	// outlive this process.
	DieWithParent bool
}

// DefaultOptions are what Start uses: moto_server takes 2-3 s to import its services.
var DefaultOptions = Options{
	Ready:     Backoff{Initial: 50 * time.Millisecond, Factor: 2, Max: 500 * time.Millisecond, Timeout: 60 * time.Second},
	StopGrace: 5 * time.Second,
}

// Server is a running moto_server child process in its own process group.
type Server struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:40123.
	URL string
	// Port is the TCP port it listens on (127.0.0.1 only).
	Port int
	// LogPath is the file that receives moto's request log.
	LogPath string

	cmd       *exec.Cmd
	exited    chan struct{}
	stopOnce  sync.Once
	stopGrace time.Duration
}

// Start runs `moto_server -H 127.0.0.1 -p <free port>` and waits until it answers HTTP. ctx bounds
// only the start: the server runs until Stop, and keeps running if this process exits without
// calling Stop (the local site's detached mode relies on that).
func Start(ctx context.Context) (*Server, error) {
	return StartWith(ctx, DefaultOptions)
}

// StartWith is Start with explicit wait parameters.
func StartWith(ctx context.Context, o Options) (*Server, error) {
	bin, err := exec.LookPath(Binary)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", Binary, err)
	}
	// The port is chosen before moto binds it, so another process can take it in between; moto
	// then exits at once and a new port is tried.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := start(ctx, bin, o)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if ctx.Err() != nil || !errors.Is(err, errExited) {
			break
		}
	}
	return nil, lastErr
}

var errExited = errors.New("moto_server exited")

func start(ctx context.Context, bin string, o Options) (*Server, error) {
	port, err := netx.FreePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.CreateTemp("", "moto-"+strconv.Itoa(port)+"-*.log")
	if err != nil {
		return nil, fmt.Errorf("create moto log file: %w", err)
	}
	// A file, not a pipe: a detached server must not die of SIGPIPE when this process exits.
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if o.DieWithParent {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	err = cmd.Start()
	logf.Close()
	if err != nil {
		os.Remove(logf.Name())
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &Server{
		URL:       "http://127.0.0.1:" + strconv.Itoa(port),
		Port:      port,
		LogPath:   logf.Name(),
		cmd:       cmd,
		exited:    make(chan struct{}),
		stopGrace: o.StopGrace,
	}
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(ctx, o.Ready); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context, b Backoff) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.NewTimer(b.Timeout)
	defer deadline.Stop()
	wait := b.Initial
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/moto-api/data.json", nil)
		if err != nil {
			return fmt.Errorf("build readiness request: %w", err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("wait for moto_server on port %d: %w", s.Port, ctx.Err())
		case <-s.exited:
			timer.Stop()
			return fmt.Errorf("%w before answering on port %d: %s", errExited, s.Port, s.logTail(2000))
		case <-deadline.C:
			timer.Stop()
			return fmt.Errorf("moto_server did not answer on port %d within %s: %w; log: %s", s.Port, b.Timeout, err, s.logTail(2000))
		case <-timer.C:
		}
		wait = b.next(wait)
	}
}

func (s *Server) logTail(n int) string {
	data, err := os.ReadFile(s.LogPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	data = bytes.TrimSpace(data)
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}

// PID is the server's process id (also its process group id).
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Stop ends the server's process group: SIGTERM, then SIGKILL after the grace period. It removes
// the log file and is safe to call more than once.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		pgid := s.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		grace := time.NewTimer(s.stopGrace)
		defer grace.Stop()
		select {
		case <-s.exited:
		case <-grace.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-s.exited
		}
		os.Remove(s.LogPath)
	})
}

// Reset wipes every resource on the server (POST /moto-api/reset).
func (s *Server) Reset() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/moto-api/reset", nil)
	if err != nil {
		return fmt.Errorf("build reset request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("reset moto_server: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reset moto_server: HTTP %s", resp.Status)
	}
	return nil
}

// Require skips (or, in CI, fails) the test when moto_server is not installed.
func Require(t testing.TB) {
	t.Helper()
	testutil.RequireBinary(t, Binary)
}

// StartForTest requires moto_server, starts a server for this test alone and stops it when the
// test ends, or when the test binary dies.
func StartForTest(t testing.TB) *Server {
	t.Helper()
	Require(t)
	o := DefaultOptions
	o.DieWithParent = true
	s, err := StartWith(context.Background(), o)
	if err != nil {
		t.Fatalf("start moto_server: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}
