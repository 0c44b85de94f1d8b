// Package metrics publishes measurements as CloudWatch Embedded Metric Format (EMF) log lines:
// Lambda ships stdout to CloudWatch Logs, which turns the lines into metrics with no API call and
// no client to build.
package metrics

import (
	"encoding/json"
	"io"
	"sort"
	"sync"
	"time"
)

// Namespace is the CloudWatch namespace of every pgfleet metric.
const Namespace = "pgfleet"

// Units used by pgfleet.
const (
	Milliseconds = "Milliseconds"
	Count        = "Count"
	Gigabytes    = "Gigabytes"
	Bytes        = "Bytes"
)

// Value is one measurement.
type Value struct {
	Name  string
	Unit  string
	Value float64
}

// Sink receives measurements with their dimensions.
type Sink interface {
	Put(dims map[string]string, values ...Value)
}

// EMF writes one EMF JSON line per Put.
type EMF struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
}

// NewEMF writes EMF lines to w.
func NewEMF(w io.Writer) *EMF { return &EMF{w: w, now: time.Now} }

// Put implements Sink. Errors writing a log line are dropped: metrics never fail a job.
func (e *EMF) Put(dims map[string]string, values ...Value) {
	if len(values) == 0 {
		return
	}
	doc := map[string]any{}
	keys := make([]string, 0, len(dims))
	for k, v := range dims {
		keys = append(keys, k)
		doc[k] = v
	}
	sort.Strings(keys)
	defs := make([]map[string]string, 0, len(values))
	for _, v := range values {
		defs = append(defs, map[string]string{"Name": v.Name, "Unit": v.Unit})
		doc[v.Name] = v.Value
	}
	doc["_aws"] = map[string]any{
		"Timestamp": e.now().UnixMilli(),
		"CloudWatchMetrics": []map[string]any{{
			"Namespace":  Namespace,
			"Dimensions": [][]string{keys},
			"Metrics":    defs,
		}},
	}
	line, err := json.Marshal(doc)
	if err != nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, _ = e.w.Write(append(line, '\n'))
}

// Recorder keeps measurements in memory (tests, the local demo's summary).
type Recorder struct {
	mu     sync.Mutex
	Points []Point
}

// Point is one recorded Put.
type Point struct {
	Dims   map[string]string
	Values []Value
}

// Put implements Sink.
func (r *Recorder) Put(dims map[string]string, values ...Value) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Points = append(r.Points, Point{Dims: dims, Values: values})
}

// Get returns the last recorded value of a metric.
func (r *Recorder) Get(name string) (float64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.Points) - 1; i >= 0; i-- {
		for _, v := range r.Points[i].Values {
			if v.Name == name {
				return v.Value, true
			}
		}
	}
	return 0, false
}

// Multi fans measurements out to several sinks.
type Multi []Sink

// Put implements Sink.
func (m Multi) Put(dims map[string]string, values ...Value) {
	for _, s := range m {
		s.Put(dims, values...)
	}
}
