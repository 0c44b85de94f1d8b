package walprune_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgfleet/pgfleet/shared/local/moto"
	"github.com/pgfleet/pgfleet/shared/testutil"
	"github.com/pgfleet/pgfleet/shared/wal"
	"github.com/pgfleet/pgfleet/shared/walprune"
)

// BenchmarkPrune100kVsAWSCLI deletes the same WAL twice on one moto server: the pruner in one
// bucket, `aws s3 rm --recursive` (AWS CLI v1) with include patterns matching exactly the
// planned keys in a second bucket holding the same 100,000-object pgBackRest archive. Both talk
// to moto through one counting reverse proxy, so their requests are counted the same way. The
// buckets must end up with the same keys. Setup (two populated buckets) runs once; run it with
// -benchtime 1x (make bench does): a second iteration would find nothing left to delete.
func BenchmarkPrune100kVsAWSCLI(b *testing.B) {
	benchPruneVsCLI(b, pgbr100kEnd, pgbr100kBoundary)
}

// benchPruneVsCLI runs the comparison on pgbrFixture(end, boundary).
func benchPruneVsCLI(b *testing.B, end uint64, boundary wal.Segment) {
	awsCLI := testutil.RequireBinary(b, "aws")
	m := newMotoSite(b)
	proxy := newCountingProxy(b, m.srv.URL)
	fix := pgbrFixture(end, boundary)
	const prunerBucket, cliBucket = "bench-pruner", "bench-cli"

	start := time.Now()
	m.setup(b, pgbrArchive(prunerBucket), boundary, "", fix.Keys)
	ctx := context.Background()
	if _, err := m.admin.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(cliBucket)}); err != nil {
		b.Fatal(err)
	}
	if err := putObjects(ctx, m.srv.URL, cliBucket, fix.Keys); err != nil {
		b.Fatal(err)
	}
	b.Logf("populated 2 x %d objects in %s", len(fix.Keys), time.Since(start).Round(time.Second))

	cfg, err := moto.Config(ctx, proxy.URL())
	if err != nil {
		b.Fatal(err)
	}
	p := m.pruner(s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }))
	cliArgs := append([]string{"s3", "rm", "s3://" + cliBucket + "/" + fix.Root, "--recursive", "--exclude", "*"}, cliIncludes(boundary)...)
	cliArgs = append(cliArgs, "--endpoint-url", proxy.URL(), "--only-show-errors")
	cliEnv := cliEnvironment(b)

	var (
		once                        sync.Once
		prunerTime, cliTime         time.Duration
		prunerCounts, cliCounts     map[string]int
		prunerRequests, cliRequests int
		prunerDeleted               int
		prunerResult                walprune.Result
	)
	for b.Loop() {
		proxy.reset()
		t0 := time.Now()
		res, err := p.Run(ctx, walprune.Request{Cluster: "main"})
		if err != nil {
			b.Fatalf("pruner: %v", err)
		}
		pt := time.Since(t0)
		pc := proxy.reset()

		t0 = time.Now()
		cmd := exec.CommandContext(ctx, awsCLI, cliArgs...)
		cmd.Env = cliEnv
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("aws s3 rm: %v\n%s", err, tail(out, 2000))
		}
		ct := time.Since(t0)
		cc := proxy.reset()
		once.Do(func() {
			prunerTime, cliTime, prunerCounts, cliCounts = pt, ct, pc, cc
			prunerRequests, cliRequests = sum(pc), sum(cc)
			prunerDeleted, prunerResult = res.Deleted, res
		})
	}

	// Same result: both buckets hold exactly what a complete prune leaves.
	left, leftCLI, want := m.listKeys(b, prunerBucket), m.listKeys(b, cliBucket), fix.Remaining()
	if !slices.Equal(left, want) || !slices.Equal(leftCLI, left) {
		b.Fatalf("remaining keys differ: pruner bucket %d, cli bucket %d, want %d (first difference %q)", len(left), len(leftCLI), len(want), firstDifference(left, leftCLI))
	}
	if prunerDeleted != len(fix.Delete) || prunerResult.DeleteRequests != (len(fix.Delete)+999)/1000 {
		b.Fatalf("pruner deleted %d in %d requests", prunerDeleted, prunerResult.DeleteRequests)
	}
	b.Logf("pruner: %d deleted in %s, requests %v", prunerDeleted, prunerTime.Round(time.Millisecond), prunerCounts)
	b.Logf("aws s3 rm: %s, requests %v", cliTime.Round(time.Millisecond), cliCounts)
	b.Logf("aws %s", strings.Join(cliArgs, " "))
	b.ReportMetric(prunerTime.Seconds(), "pruner-s")
	b.ReportMetric(float64(prunerRequests), "pruner-requests")
	b.ReportMetric(cliTime.Seconds(), "cli-s")
	b.ReportMetric(float64(cliRequests), "cli-requests")
	b.ReportMetric(float64(cliRequests)/float64(prunerRequests), "cli/pruner-requests")
	b.ReportMetric(cliTime.Seconds()/prunerTime.Seconds(), "cli/pruner-time")
}

// cliIncludes are the --include patterns (relative to the archive's root) that match exactly the
// keys a prune of a pgbrFixture to boundary deletes: the older archive id's segments, every .gz
// file of the directories of timelines 1 and 2 before the boundary's, and the segments of the
// boundary's directories before it. Junk in those directories does not end in .gz; the benchmark
// checks the outcome key by key.
func cliIncludes(boundary wal.Segment) []string {
	out := []string{"--include", "14-1/*.gz"}
	log := boundary.String()[8:16]
	for _, tli := range []string{"00000001", "00000002"} {
		for _, l := range hexBelow(boundary.Log) {
			out = append(out, "--include", "15-1/"+tli+l+"/*.gz")
		}
		for _, s := range hexBelow(boundary.Seg) {
			out = append(out, "--include", "15-1/"+tli+log+"/"+tli+log+s+"-*.gz")
		}
	}
	return out
}

// hexBelow returns fnmatch patterns that together match exactly the 8-digit upper-case hex
// numbers below v: for each digit of v, the numbers that share the digits before it and have
// a smaller one there.
func hexBelow(v uint32) []string {
	const digits = "0123456789ABCDEF"
	s := fmt.Sprintf("%08X", v)
	var out []string
	for i := 0; i < len(s); i++ {
		d := strings.IndexByte(digits, s[i])
		if d == 0 {
			continue
		}
		class := "0"
		if d > 1 {
			class = "[" + digits[:d] + "]"
		}
		out = append(out, s[:i]+class+strings.Repeat("?", len(s)-i-1))
	}
	return out
}

// cliEnvironment runs the AWS CLI with moto's test credentials and nothing from ~/.aws.
func cliEnvironment(b *testing.B) []string {
	dir := b.TempDir()
	env := []string{
		"AWS_ACCESS_KEY_ID=test",
		"AWS_SECRET_ACCESS_KEY=test",
		"AWS_DEFAULT_REGION=us-east-1",
		"AWS_CONFIG_FILE=" + filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
		"HOME=" + dir,
	}
	for _, k := range []string{"PATH", "PYENV_ROOT", "PYENV_VERSION", "LANG", "LC_ALL"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// countingProxy is a reverse proxy in front of moto that counts requests by S3 operation.
type countingProxy struct {
	srv    *httptest.Server
	mu     sync.Mutex
	counts map[string]int
}

func newCountingProxy(tb testing.TB, target string) *countingProxy {
	tb.Helper()
	u, err := url.Parse(target)
	if err != nil {
		tb.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}
	c := &countingProxy{counts: map[string]int{}}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := s3Operation(r)
		c.mu.Lock()
		c.counts[op]++
		c.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	tb.Cleanup(c.srv.Close)
	return c
}

func (c *countingProxy) URL() string { return c.srv.URL }

// reset returns the counts so far and starts again from zero.
func (c *countingProxy) reset() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.counts
	c.counts = map[string]int{}
	return out
}

// s3Operation names the S3 operation of a path-style request.
func s3Operation(r *http.Request) string {
	q := r.URL.Query()
	objectPath := strings.Contains(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.Method == http.MethodGet && q.Get("list-type") == "2":
		return "ListObjectsV2"
	case r.Method == http.MethodGet && q.Has("versioning"):
		return "GetBucketVersioning"
	case r.Method == http.MethodGet && !objectPath:
		return "ListObjects"
	case r.Method == http.MethodPost && q.Has("delete"):
		return "DeleteObjects"
	case r.Method == http.MethodDelete && objectPath:
		return "DeleteObject"
	case r.Method == http.MethodHead && !objectPath:
		return "HeadBucket"
	}
	return r.Method + " other"
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// firstDifference returns the first key in one sorted list and not the other.
func firstDifference(a, b []string) string {
	all := append(slices.Clone(a), b...)
	sort.Strings(all)
	for _, k := range all {
		_, inA := slices.BinarySearch(a, k)
		_, inB := slices.BinarySearch(b, k)
		if inA != inB {
			return fmt.Sprintf("%s (in pruner bucket: %v)", k, inA)
		}
	}
	return ""
}
