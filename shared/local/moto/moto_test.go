package moto_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/pgfleet/pgfleet/shared/local/moto"
	"github.com/pgfleet/pgfleet/shared/local/netx"
)

func insecureClient() *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // self-signed test proxy
	})
}

func s3Client(t *testing.T, url string, optFns ...func(*config.LoadOptions) error) *s3.Client {
	t.Helper()
	cfg, err := moto.Config(context.Background(), url, append([]func(*config.LoadOptions) error{config.WithHTTPClient(insecureClient())}, optFns...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true; o.DisableLogOutputChecksumValidationSkipped = true })
}

// S3 through the HTTPS proxy reaches the plain-HTTP moto behind it; Reset wipes it; Stop ends it.
func TestS3ThroughTLSProxy(t *testing.T) {
	t.Parallel()
	srv := moto.StartForTest(t)
	proxy, err := moto.StartTLSProxy(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	if !strings.HasPrefix(proxy.URL, "https://127.0.0.1:") || proxy.URL != "https://127.0.0.1:"+strconv.Itoa(proxy.Port) {
		t.Fatalf("proxy URL %q, port %d", proxy.URL, proxy.Port)
	}
	ctx := context.Background()
	c := s3Client(t, proxy.URL)
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("wal")}); err != nil {
		t.Fatalf("create bucket through proxy: %v", err)
	}
	body := strings.Repeat("0123456789abcdef", 64*1024) // 1 MiB, bigger than one read
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("wal"), Key: aws.String("a/b.gz"), Body: strings.NewReader(body)}); err != nil {
		t.Fatalf("put object through proxy: %v", err)
	}
	// Read it back directly from moto, not through the proxy.
	direct := s3Client(t, srv.URL)
	out, err := direct.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("wal"), Key: aws.String("a/b.gz")})
	if err != nil {
		t.Fatalf("get object from moto: %v", err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(got) != body {
		t.Fatalf("object has %d bytes, want %d", len(got), len(body))
	}

	if err := srv.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, err := direct.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("wal")}); err == nil {
		t.Fatal("bucket still exists after Reset")
	}

	srv.Stop()
	srv.Stop() // idempotent
	hc := &http.Client{Timeout: time.Second}
	if resp, err := hc.Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Fatal("moto_server still answers after Stop")
	}
}

// A verifying client rejects the proxy's self-signed certificate: the proxy really speaks TLS.
func TestTLSProxyIsTLS(t *testing.T) {
	t.Parallel()
	srv := moto.StartForTest(t)
	proxy, err := moto.StartTLSProxy(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	if _, err := http.Get(proxy.URL); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("verifying client: err = %v, want a certificate error", err)
	}
	if _, err := moto.StartTLSProxy("https://127.0.0.1:1"); err == nil {
		t.Fatal("https target accepted")
	}
}

// ServeTLSProxy serves until its context ends and then returns nil.
func TestServeTLSProxy(t *testing.T) {
	t.Parallel()
	srv := moto.StartForTest(t)
	port, err := netx.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- moto.ServeTLSProxy(ctx, "127.0.0.1:"+strconv.Itoa(port), srv.URL) }()
	c := s3Client(t, "https://127.0.0.1:"+strconv.Itoa(port))
	var lastErr error
	for range 50 { // the listener comes up in microseconds; bounded anyway
		if _, lastErr = c.ListBuckets(context.Background(), &s3.ListBucketsInput{}); lastErr == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if lastErr != nil {
		t.Fatalf("list buckets through ServeTLSProxy: %v", lastErr)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ServeTLSProxy returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeTLSProxy did not return after cancel")
	}
}

// FailOperation fails exactly the named operation, the given number of times, before anything
// reaches moto; the Recorder sees every call.
func TestFailOperationAndRecorder(t *testing.T) {
	t.Parallel()
	srv := moto.StartForTest(t)
	rec := &moto.Recorder{}
	c := s3Client(t, srv.URL, config.WithAPIOptions([]func(*middleware.Stack) error{
		moto.FailOperation("CreateBucket", 2), rec.Middleware,
	}))
	ctx := context.Background()
	for i := 1; i <= 2; i++ {
		_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bkt")})
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != moto.InjectedFaultCode {
			t.Fatalf("call %d: err = %v, want an API error coded %s", i, err, moto.InjectedFaultCode)
		}
	}
	// Other operations pass while the named one is failing.
	if _, err := c.ListBuckets(ctx, &s3.ListBucketsInput{}); err != nil {
		t.Fatalf("list buckets: %v", err)
	}
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bkt")}); err != nil {
		t.Fatalf("third create bucket: %v", err)
	}
	out, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil || len(out.Buckets) != 1 {
		t.Fatalf("buckets after the faults: %v, %v (want exactly 1: the failed calls never reached moto)", out, err)
	}
	if n := rec.Count("CreateBucket"); n != 3 {
		t.Fatalf("recorded %d CreateBucket calls, want 3", n)
	}
	in, ok := rec.Inputs("CreateBucket")[2].(*s3.CreateBucketInput)
	if !ok || *in.Bucket != "bkt" {
		t.Fatalf("recorded input %#v", rec.Inputs("CreateBucket")[2])
	}
	if got := len(rec.Calls()); got != 5 {
		t.Fatalf("recorded %d calls, want 5", got)
	}
}

// A response that reaches the SDK before net/http's writer goroutine is done with the request body
// must not cost the connection. The test holds the writer goroutine right after it wrote the body
// until the SDK has the response and smithy-go has closed the body: the interleaving a loaded
// machine produces now and then, which failed TestAcquireRelease with "use of closed network
// connection". Without StableRequestBody (the control) net/http reports the request write failed
// (io.EOF) and closes the connection; with moto.Config's clients the write succeeds. If the
// control ever passes, smithy-go no longer misreports a closed body and StableRequestBody can go.
func TestStableRequestBody(t *testing.T) {
	t.Parallel()
	srv := moto.StartForTest(t)
	for _, tc := range []struct {
		name      string
		stable    bool
		wantWrite bool // net/http's own verdict on the request write
	}{
		{name: "sdk alone", stable: false, wantWrite: false},
		{name: "moto.Config", stable: true, wantWrite: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &writeGate{}
			cfg, err := moto.Config(context.Background(), srv.URL, config.WithHTTPClient(g.client()))
			if err != nil {
				t.Fatal(err)
			}
			c := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
				o.APIOptions = append(o.APIOptions, g.middleware)
				if !tc.stable {
					o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
						_, err := s.Deserialize.Remove("pgfleet.StableRequestBody")
						return err
					})
				}
			})
			_, callErr := c.ListTables(context.Background(), &dynamodb.ListTablesInput{})
			writeErr, ok := g.result()
			if !ok {
				t.Fatal("the request write never finished: the gate did not hold the writer goroutine")
			}
			switch {
			case tc.wantWrite && (writeErr != nil || callErr != nil):
				t.Fatalf("write error %v, call error %v: want both nil", writeErr, callErr)
			case !tc.wantWrite && writeErr == nil:
				t.Fatalf("control: the request write succeeded (call error %v); the race this test reproduces is gone upstream, drop StableRequestBody", callErr)
			}
			t.Logf("request write: %v; call: %v", writeErr, callErr)
		})
	}
}

// writeGate holds net/http's writer goroutine once it has written a whole request, until the
// SDK's transport handler (smithy-go's ClientHandler, which closes the request body) has returned
// with the response; then it records net/http's verdict on the write. One request at a time.
type writeGate struct {
	mu       sync.Mutex
	release  chan struct{}
	writeErr error
	done     bool
}

func (g *writeGate) client() *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		d := &net.Dialer{Timeout: 5 * time.Second}
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &gatedConn{Conn: c, gate: g}, nil
		}
	})
}

// middleware sits innermost in the deserialize step: next is the transport handler.
func (g *writeGate) middleware(stack *middleware.Stack) error {
	return stack.Deserialize.Add(middleware.DeserializeMiddlewareFunc("test.writeGate",
		func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
			release, wrote := make(chan struct{}), make(chan error, 1)
			g.mu.Lock()
			g.release = release
			g.mu.Unlock()
			ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
				WroteRequest: func(i httptrace.WroteRequestInfo) { wrote <- i.Err },
			})
			out, md, err := next.HandleDeserialize(ctx, in)
			close(release)
			select {
			case werr := <-wrote:
				g.mu.Lock()
				g.writeErr, g.done = werr, true
				g.mu.Unlock()
			case <-time.After(10 * time.Second):
			}
			return out, md, err
		}), middleware.After)
}

func (g *writeGate) result() (error, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.writeErr, g.done
}

var contentLength = regexp.MustCompile(`(?i)\r\ncontent-length: *(\d+)\r\n`)

// gatedConn blocks the Write that completes a request (headers plus Content-Length bytes) after
// the bytes went out, until the gate releases it; bounded, so a broken test cannot hang.
type gatedConn struct {
	net.Conn
	gate *writeGate
	sent []byte
}

func (c *gatedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.sent = append(c.sent, p[:n]...)
	end := bytes.Index(c.sent, []byte("\r\n\r\n"))
	if err != nil || end < 0 {
		return n, err
	}
	want := 0
	if m := contentLength.FindSubmatch(c.sent[:end+2]); m != nil {
		want, _ = strconv.Atoi(string(m[1]))
	}
	if len(c.sent)-(end+4) < want {
		return n, err
	}
	c.sent = nil
	c.gate.mu.Lock()
	release := c.gate.release
	c.gate.mu.Unlock()
	select {
	case <-release:
	case <-time.After(10 * time.Second):
	}
	return n, err
}
