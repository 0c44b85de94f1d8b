// Package lambdart is a fake Lambda Runtime API for tests: it runs a function's real bootstrap
// binary, hands it events one at a time and collects its answers, the way the Lambda service
// does. The protocol is small: GET /2018-06-01/runtime/invocation/next answers an event with the
// request id, deadline and function ARN headers; the function then POSTs to
// /2018-06-01/runtime/invocation/{id}/response or /error.
package lambdart

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Answer is what the function posted for one invocation.
type Answer struct {
	RequestID string
	Error     bool
	Body      string
}

// Runtime serves the Runtime API.
type Runtime struct {
	// Stderr is what the function wrote to stderr (its log) once Start ran it.
	Stderr Output

	srv     *httptest.Server
	events  chan invocation
	answers chan Answer
	once    sync.Once
	seq     int
	mu      sync.Mutex
}

type invocation struct {
	id      string
	payload []byte
}

// New starts a Runtime API server; Close stops it.
func New() *Runtime {
	r := &Runtime{events: make(chan invocation), answers: make(chan Answer, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", func(w http.ResponseWriter, req *http.Request) {
		select {
		case inv := <-r.events:
			w.Header().Set("Lambda-Runtime-Aws-Request-Id", inv.id)
			w.Header().Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(5*time.Minute).UnixMilli(), 10))
			w.Header().Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:pgfleet-test")
			_, _ = w.Write(inv.payload)
		case <-req.Context().Done():
		}
	})
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/{kind}", func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.answers <- Answer{RequestID: req.PathValue("id"), Error: req.PathValue("kind") == "error", Body: string(body)}
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.answers <- Answer{RequestID: "init", Error: true, Body: string(body)}
		w.WriteHeader(http.StatusAccepted)
	})
	r.srv = httptest.NewServer(mux)
	return r
}

// Addr is the value of AWS_LAMBDA_RUNTIME_API.
func (r *Runtime) Addr() string { return strings.TrimPrefix(r.srv.URL, "http://") }

// Close stops the server.
func (r *Runtime) Close() { r.once.Do(r.srv.Close) }

// Invoke hands the function one event and waits for its answer.
func (r *Runtime) Invoke(ctx context.Context, payload []byte) (Answer, error) {
	r.mu.Lock()
	r.seq++
	id := fmt.Sprintf("req-%d", r.seq)
	r.mu.Unlock()
	select {
	case r.events <- invocation{id: id, payload: payload}:
	case a := <-r.answers:
		return a, fmt.Errorf("function answered before taking the event: %+v", a)
	case <-ctx.Done():
		return Answer{}, fmt.Errorf("function never asked for an event: %w", ctx.Err())
	}
	select {
	case a := <-r.answers:
		return a, nil
	case <-ctx.Done():
		return Answer{}, fmt.Errorf("no answer to %s: %w", id, ctx.Err())
	}
}

// Build compiles the function package at dir into a bootstrap binary for this machine, with the
// test's own build settings so the build cache the test binary filled is reused.
func Build(t testing.TB, dir string) string {
	t.Helper()
	bin := t.TempDir() + "/bootstrap"
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", dir, err, out)
	}
	return bin
}

// Start runs the bootstrap binary against the runtime with env added to the test's environment;
// the process is killed when the test ends. Its stdout and stderr go to the returned buffer.
func (r *Runtime) Start(t testing.TB, bin string, env ...string) *Output {
	t.Helper()
	out := &Output{}
	cmd := exec.Command(bin)
	cmd.Env = append(append(os.Environ(), "AWS_LAMBDA_RUNTIME_API="+r.Addr()), env...)
	// Stdout is EMF in Lambda, stderr the log: Stderr keeps the log apart.
	cmd.Stdout, cmd.Stderr = out, io.MultiWriter(out, &r.Stderr)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		r.Close()
	})
	return out
}

// Output collects a process's output safely.
type Output struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// MotoEnv is the environment a function needs to talk to moto_server at url instead of AWS.
func MotoEnv(url string) []string {
	return []string{"AWS_ENDPOINT_URL=" + url, "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
		"AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true", "AWS_MAX_ATTEMPTS=1"}
}

// Run builds the function package at dir and starts its bootstrap against a new Runtime.
func Run(t testing.TB, dir string, env ...string) (*Runtime, *Output) {
	t.Helper()
	bin := Build(t, dir)
	rt := New()
	return rt, rt.Start(t, bin, env...)
}

// LogProblems reads what a function wrote to stderr and lists what is wrong with it: a line that
// is not JSON, or a line of the function's own without its cluster and request id. Lines of the
// Lambda runtime library's error report (the standard logger, made JSON by slog.SetDefault; the
// same error is on the run's own failure line) need not name a run.
func LogProblems(stderr string) []string {
	var out []string
	for i, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if l == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			out = append(out, fmt.Sprintf("stderr line %d is not JSON: %q", i+1, l))
			continue
		}
		if msg, _ := rec["msg"].(string); strings.Contains(msg, `"errorType"`) {
			continue
		}
		for _, k := range []string{"cluster", "request_id"} {
			if _, ok := rec[k]; !ok {
				out = append(out, fmt.Sprintf("stderr line %d has no %s: %s", i+1, k, l))
			}
		}
	}
	return out
}
