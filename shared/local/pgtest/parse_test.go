package pgtest

import (
	"testing"
	"time"
)

func TestParsePgbench(t *testing.T) {
	tests := []struct {
		name  string
		out   string
		ran   time.Duration
		want  int64
		exact bool
	}{
		{"summary", "progress: 1.0 s, 10.0 tps\nnumber of transactions actually processed: 1234\n", time.Second, 1234, true},
		{"progress only", "progress: 1.0 s, 100.0 tps, lat 1 ms\nprogress: 2.0 s, 200.0 tps, lat 1 ms\n", 2 * time.Second, 300, false},
		{"last rate carried", "progress: 1.0 s, 100.0 tps, lat 1 ms\n", 1500 * time.Millisecond, 150, false},
		{"nothing", "connection refused\n", time.Second, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := parsePgbench(tc.out, tc.ran)
			if st.Transactions != tc.want || st.Exact != tc.exact {
				t.Errorf("parsePgbench = %d exact %v; want %d exact %v", st.Transactions, st.Exact, tc.want, tc.exact)
			}
		})
	}
}
