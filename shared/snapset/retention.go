package snapset

import (
	"fmt"
	"sort"
	"time"
)

// Policy is a retention policy: the last N completed sets, plus the newest completed set of each
// of the last Daily days, Weekly ISO weeks and Monthly months that have one (UTC calendar).
type Policy struct {
	KeepLast int `json:"keepLast"`
	Daily    int `json:"daily"`
	Weekly   int `json:"weekly"`
	Monthly  int `json:"monthly"`
}

// Validate checks the policy's numbers.
func (p Policy) Validate() error {
	if p.KeepLast < 1 {
		return fmt.Errorf("retention.keepLast must be at least 1 (the newest completed set is always kept), got %d", p.KeepLast)
	}
	for name, v := range map[string]int{"daily": p.Daily, "weekly": p.Weekly, "monthly": p.Monthly} {
		if v < 0 || v > 1000 {
			return fmt.Errorf("retention.%s must be between 0 and 1000, got %d", name, v)
		}
	}
	return nil
}

// Decision says what retention does with one set and why.
type Decision struct {
	SetID   string   `json:"setId"`
	Keep    bool     `json:"keep"`
	Reasons []string `json:"reasons"`
	Set     Set      `json:"-"`
}

// Apply decides, for every set, whether to keep it. Invariants, each tested:
// the newest completed set is always kept; a set in progress is never deleted; a set is kept or
// deleted whole (decisions are per set); failed sets are deleted once nothing writes to them.
// The result is ordered newest first.
func (p Policy) Apply(sets []Set) []Decision {
	sorted := append([]Set(nil), sets...)
	SortNewestFirst(sorted)
	reasons := make(map[string][]string, len(sorted))
	add := func(id, why string) { reasons[id] = append(reasons[id], why) }

	var completed []Set
	for _, s := range sorted {
		switch {
		case s.InProgress():
			add(s.SetID, "in progress")
		case s.Completed():
			completed = append(completed, s)
		}
	}
	for i, s := range completed {
		if i == 0 {
			add(s.SetID, "newest completed")
		}
		if i < p.KeepLast {
			add(s.SetID, fmt.Sprintf("last %d", p.KeepLast))
		}
	}
	bucket := func(name string, n int, key func(time.Time) string) {
		if n <= 0 {
			return
		}
		seen := map[string]bool{}
		for _, s := range completed { // newest first: the first set seen in a bucket is its newest
			k := key(s.CreatedAt.UTC())
			if seen[k] {
				continue
			}
			if len(seen) == n {
				return
			}
			seen[k] = true
			add(s.SetID, fmt.Sprintf("%s %s", name, k))
		}
	}
	bucket("daily", p.Daily, func(t time.Time) string { return t.Format("2006-01-02") })
	bucket("weekly", p.Weekly, func(t time.Time) string {
		y, w := t.ISOWeek()
		return fmt.Sprintf("%04d-W%02d", y, w)
	})
	bucket("monthly", p.Monthly, func(t time.Time) string { return t.Format("2006-01") })

	out := make([]Decision, 0, len(sorted))
	for _, s := range sorted {
		d := Decision{SetID: s.SetID, Set: s, Reasons: reasons[s.SetID]}
		d.Keep = len(d.Reasons) > 0
		if !d.Keep {
			if s.Failed() {
				d.Reasons = []string{"failed"}
			} else if !s.Completed() {
				d.Reasons = []string{"incomplete"}
			} else {
				d.Reasons = []string{"expired"}
			}
		}
		sort.Strings(d.Reasons)
		out = append(out, d)
	}
	return out
}

// Retained returns the sets a decision list keeps.
func Retained(ds []Decision) []Set {
	var out []Set
	for _, d := range ds {
		if d.Keep {
			out = append(out, d.Set)
		}
	}
	return out
}
