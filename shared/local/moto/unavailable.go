package moto

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// Unavailable starts an endpoint that answers every request with 503 Service Unavailable, the
// way an API front end does when it may or may not have carried the call out, and counts the
// requests. Tests point a client with the SDK's default retryer at it to check that a call
// which is not safe to repeat is sent exactly once.
func Unavailable(tb testing.TB) (url string, requests func() int64) {
	tb.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("Service Unavailable"))
	}))
	tb.Cleanup(srv.Close)
	return srv.URL, n.Load
}
