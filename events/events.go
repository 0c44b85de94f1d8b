// Package events decodes the payloads pgfleet's functions accept into the request types the jobs
// own (backup.Request, walprune.Request), with sample events beside it (*.json). Scheduled jobs
// accept both the bare request a rule or schedule with a constant input delivers
// ({"cluster":"main"}) and the EventBridge "Scheduled Event" envelope with the request in its
// detail.
package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	lambdaevents "github.com/aws/aws-lambda-go/events"
)

// ErrMalformed marks an event pgfleet cannot read.
var ErrMalformed = errors.New("malformed event")

// DecodeScheduled reads a scheduled job's request from either a bare JSON object or an
// EventBridge event envelope whose detail holds the request. Unknown fields are errors, so a
// typo in a schedule's input fails loudly instead of running with defaults.
func DecodeScheduled(raw []byte, into any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return fmt.Errorf("%w: want a JSON object such as {\"cluster\":\"main\"}, got %q", ErrMalformed, head(raw))
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	_, hasDetailType := probe["detail-type"]
	_, hasSource := probe["source"]
	if hasDetailType && hasSource {
		var env lambdaevents.EventBridgeEvent
		if err := json.Unmarshal(raw, &env); err != nil {
			return fmt.Errorf("%w: EventBridge envelope: %v", ErrMalformed, err)
		}
		detail := bytes.TrimSpace(env.Detail)
		if len(detail) == 0 || bytes.Equal(detail, []byte("{}")) || bytes.Equal(detail, []byte("null")) {
			return fmt.Errorf("%w: %q event from %s has an empty detail: give the rule or schedule a constant input such as {\"cluster\":\"main\"}", ErrMalformed, env.DetailType, env.Source)
		}
		raw = detail
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON object", ErrMalformed)
	}
	return nil
}

func head(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}
