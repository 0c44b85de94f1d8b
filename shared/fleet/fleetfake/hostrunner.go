package fleetfake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/pgfleet/pgfleet/shared/hostscripts"
)

// Effect is what a script run does to the host's frozen state.
type Effect int

// Effects.
const (
	// EffectAuto: a freeze whose result line says frozen (on success, or a failure that left
	// mounts frozen) freezes the host; a thaw whose result line says ok thaws it; a run with no
	// result line changes nothing.
	EffectAuto Effect = iota
	// EffectNone changes nothing, whatever the result says.
	EffectNone
	// EffectFreeze freezes the host, whatever the result says (a freeze whose answer was lost).
	EffectFreeze
	// EffectThaw thaws the host, whatever the result says.
	EffectThaw
)

// Response is a programmed answer to one script run.
type Response struct {
	// Line is the script's JSON result line, or nil when the run printed none (a lost command,
	// an agent error). A line must be one the real script can print: Respond and Default check
	// it with the parser the orchestrator uses (hostscripts.ParseFreezeResult, ParseThawResult)
	// and panic on a line the script never prints, so no test passes on an impossible answer.
	Line []byte
	// Err is returned with Line (a script that ran and failed returns both).
	Err error
	// Block makes the run wait until its context is done, then return Line and the context's
	// error: a command that never answers. The Effect applies before the wait.
	Block bool
	// Effect says what the run does to the host.
	Effect Effect
	// Unchecked lets Line be a line today's script does not print, for the one case where a
	// real host can: an SSM document of another version than the function.
	Unchecked bool
}

// JSON returns a Response whose line is v marshalled, e.g. a hostscripts.FreezeResult.
func JSON(v any) Response {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("fleetfake: marshal response: %v", err))
	}
	return Response{Line: b}
}

// RunCall is one recorded script run.
type RunCall struct {
	InstanceID string
	Script     hostscripts.Name
	Args       hostscripts.Args
	// FrozenBefore is the host's state when the run started.
	FrozenBefore bool
}

// HostRunner is a fake fleet.HostRunner that models each host's frozen state. Runs answer from
// a per-script queue of programmed responses, then from the script's default response. Like the
// real adapters it refuses arguments the script's spec rejects, and like freeze.sh it refuses a
// second freeze of a frozen host (the queued response is left for the next run).
type HostRunner struct {
	Faults
	Journal *Journal

	mu       sync.Mutex
	queued   map[hostscripts.Name][]Response
	defaults map[hostscripts.Name]Response
	frozen   map[string]bool
	freezes  map[string]int
	calls    []RunCall
}

// NewHostRunner returns a HostRunner with no programmed responses: a run of a script with
// neither a queued nor a default response fails.
func NewHostRunner() *HostRunner {
	return &HostRunner{
		queued:   map[hostscripts.Name][]Response{},
		defaults: map[hostscripts.Name]Response{},
		frozen:   map[string]bool{},
		freezes:  map[string]int{},
	}
}

// Respond queues responses for the next runs of script, in order.
func (h *HostRunner) Respond(script hostscripts.Name, rs ...Response) {
	for _, r := range rs {
		mustBeReal(script, r)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.queued[script] = append(h.queued[script], rs...)
}

// Default sets the response of every run of script once its queue is empty.
func (h *HostRunner) Default(script hostscripts.Name, r Response) {
	mustBeReal(script, r)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.defaults[script] = r
}

// mustBeReal panics when r's line is not one the real script can print.
func mustBeReal(script hostscripts.Name, r Response) {
	if len(r.Line) == 0 || r.Unchecked {
		return
	}
	var err error
	switch script {
	case hostscripts.Freeze:
		_, err = hostscripts.ParseFreezeResult(r.Line)
	case hostscripts.Thaw:
		_, err = hostscripts.ParseThawResult(r.Line)
	default:
		err = fmt.Errorf("no parser for script %s", script)
	}
	if err != nil {
		panic(fmt.Sprintf("fleetfake: programmed %s response: %v", script, err))
	}
}

// SetFrozen sets a host's state, e.g. a host left frozen by someone else.
func (h *HostRunner) SetFrozen(instanceID string, frozen bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.frozen[instanceID] = frozen
}

// Frozen reports whether the host is frozen now.
func (h *HostRunner) Frozen(instanceID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.frozen[instanceID]
}

// FrozenHosts lists the hosts frozen now.
func (h *HostRunner) FrozenHosts() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for id, f := range h.frozen {
		if f {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// Freezes counts how many times the host went from thawed to frozen.
func (h *HostRunner) Freezes(instanceID string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.freezes[instanceID]
}

// Calls returns every recorded run.
func (h *HostRunner) Calls() []RunCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]RunCall, len(h.calls))
	for i, c := range h.calls {
		c.Args = maps.Clone(c.Args)
		out[i] = c
	}
	return out
}

// CallsOf returns the recorded runs of one script.
func (h *HostRunner) CallsOf(script hostscripts.Name) []RunCall {
	var out []RunCall
	for _, c := range h.Calls() {
		if c.Script == script {
			out = append(out, c)
		}
	}
	return out
}

// Run implements fleet.HostRunner.
func (h *HostRunner) Run(ctx context.Context, instanceID string, script hostscripts.Name, args hostscripts.Args) ([]byte, error) {
	h.mu.Lock()
	h.calls = append(h.calls, RunCall{InstanceID: instanceID, Script: script, Args: maps.Clone(args), FrozenBefore: h.frozen[instanceID]})
	h.mu.Unlock()
	h.Journal.add("Run:%s", script)

	before, after := h.fire(ctx, string(script))
	if before != nil {
		return nil, before
	}
	if instanceID == "" {
		return nil, errors.New("fleetfake: run: no instance id")
	}
	if _, err := args.Argv(script); err != nil {
		return nil, fmt.Errorf("fleetfake: run %s on %s: %w", script, instanceID, err)
	}

	h.mu.Lock()
	if script == hostscripts.Freeze && h.frozen[instanceID] {
		h.mu.Unlock()
		now := time.Now().UnixMicro()
		line, _ := json.Marshal(hostscripts.FreezeResult{OK: false, Action: "freeze", Host: instanceID,
			Error:     "already frozen by pgfleet since 2026-03-10T03:00:00Z (freeze record /run/pgfleet/frozen.json), run thaw first",
			StartedUS: now, FinishedUS: now})
		return line, errors.New("fleetfake: freeze exited with status 1")
	}
	r, ok := h.next(script)
	if !ok {
		h.mu.Unlock()
		return nil, fmt.Errorf("fleetfake: no response programmed for %s", script)
	}
	h.apply(instanceID, script, r)
	h.mu.Unlock()

	if r.Block {
		<-ctx.Done()
		return slices.Clone(r.Line), ctx.Err()
	}
	if after != nil {
		return slices.Clone(r.Line), after
	}
	return slices.Clone(r.Line), r.Err
}

func (h *HostRunner) next(script hostscripts.Name) (Response, bool) {
	if q := h.queued[script]; len(q) > 0 {
		h.queued[script] = q[1:]
		return q[0], true
	}
	r, ok := h.defaults[script]
	return r, ok
}

// apply changes the host's state as the response says; h.mu is held.
func (h *HostRunner) apply(instanceID string, script hostscripts.Name, r Response) {
	freeze := func() {
		if !h.frozen[instanceID] {
			h.freezes[instanceID]++
		}
		h.frozen[instanceID] = true
	}
	switch r.Effect {
	case EffectNone:
	case EffectFreeze:
		freeze()
	case EffectThaw:
		h.frozen[instanceID] = false
	case EffectAuto:
		// A script that ran answers with its line (and an error when it failed); a run with no
		// line changed nothing.
		if r.Block || len(r.Line) == 0 {
			return
		}
		switch script {
		case hostscripts.Freeze:
			// A freeze leaves the host frozen when it says so, on success or on a failure
			// its rollback could not undo.
			if fr, err := hostscripts.ParseFreezeResult(r.Line); err == nil && fr.Frozen {
				freeze()
			}
		case hostscripts.Thaw:
			if tr, err := hostscripts.ParseThawResult(r.Line); err == nil && tr.OK {
				h.frozen[instanceID] = false
			}
		}
	}
}
