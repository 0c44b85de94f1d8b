package moto_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
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
