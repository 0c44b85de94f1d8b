package hostscripts

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Runner runs a host script on an instance and returns its result line: what fleet.HostRunner
// does (SSM Run Command in AWS, bash locally). A script that ran and failed returns its line
// AND an error; a run that never reached the script, or whose answer was lost, returns no line.
type Runner interface {
	Run(ctx context.Context, instanceID string, script Name, args Args) ([]byte, error)
}

// FreezeParams are freeze.sh's flags, typed. Zero values leave the script's defaults.
type FreezeParams struct {
	PGData    string
	Port      int
	BinDir    string
	OSUser    string
	SocketDir string
	Mounts    []string
	// Filesystem is auto, ext4, xfs or zfs; Consistency freeze or crash.
	Filesystem      string
	Consistency     string
	WatchdogSeconds int
	StateDir        string
	ProtectPaths    []string
	// StandbySignal is auto or never.
	StandbySignal string
}

// Args returns the script arguments of p, the empty ones left out (the script's defaults apply).
func (p FreezeParams) Args() Args {
	return nonEmpty(Args{
		"pgdata":           p.PGData,
		"port":             itoaOrEmpty(p.Port),
		"pg-bin":           p.BinDir,
		"pg-user":          p.OSUser,
		"pg-host":          p.SocketDir,
		"mounts":           strings.Join(p.Mounts, ","),
		"filesystem":       p.Filesystem,
		"consistency":      p.Consistency,
		"watchdog-seconds": itoaOrEmpty(p.WatchdogSeconds),
		"state-dir":        p.StateDir,
		"protect":          strings.Join(p.ProtectPaths, ","),
		"standby-signal":   p.StandbySignal,
	})
}

// ThawParams are thaw.sh's flags, typed. Zero values leave the script's defaults.
type ThawParams struct {
	Mounts   []string
	PGData   string
	StateDir string
	// NoProbe skips the write probe after thawing.
	NoProbe bool
}

// Args returns the script arguments of p, the empty ones left out (the script's defaults apply).
func (p ThawParams) Args() Args {
	a := Args{"mounts": strings.Join(p.Mounts, ","), "pgdata": p.PGData, "state-dir": p.StateDir}
	if p.NoProbe {
		a["probe"] = "no"
	}
	return nonEmpty(a)
}

func nonEmpty(a Args) Args {
	for k, v := range a {
		if v == "" {
			delete(a, k)
		}
	}
	return a
}

func itoaOrEmpty(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// Outcome says what a failed host call means for the host.
type Outcome int

// Outcomes of a failed call.
const (
	// Unknown: the script may or may not have run, and may have changed the host: the answer was
	// lost, the call timed out, or the line is not one the script prints. After a freeze, thaw.
	Unknown Outcome = iota
	// Refused: the script ran to its end, failed, and left nothing of its own frozen (it undid
	// its work). A thaw would release a freeze that is not the caller's.
	Refused
	// StillFrozen: the script ran and failed, and says mounts are still frozen: thaw.
	StillFrozen
)

func (o Outcome) String() string {
	switch o {
	case Refused:
		return "refused"
	case StillFrozen:
		return "still frozen"
	}
	return "unknown outcome"
}

// CallError is the one error type of RunFreeze and RunThaw.
type CallError struct {
	Script  Name
	Outcome Outcome
	// Line is the result line when the script printed one (decoded or not).
	Line []byte
	Err  error
}

func (e *CallError) Error() string {
	if e.Outcome == Refused {
		return fmt.Sprintf("%s refused: %v", e.Script, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Script, e.Err)
}
func (e *CallError) Unwrap() error { return e.Err }

// OutcomeOf returns the outcome of a RunFreeze or RunThaw error: Unknown for any other error.
func OutcomeOf(err error) Outcome {
	var ce *CallError
	if errors.As(err, &ce) {
		return ce.Outcome
	}
	return Unknown
}

// RunFreeze runs freeze.sh on the instance with p and returns its result. On failure the error is a
// *CallError whose Outcome says whether the caller must thaw (Unknown, StillFrozen) or must not
// (Refused); the result is returned whenever the script's line could be read.
func RunFreeze(ctx context.Context, r Runner, instanceID string, p FreezeParams) (FreezeResult, error) {
	line, runErr := r.Run(ctx, instanceID, Freeze, p.Args())
	if len(line) == 0 {
		if runErr == nil {
			runErr = errors.New("the command returned no result line")
		}
		return FreezeResult{}, &CallError{Script: Freeze, Outcome: Unknown, Err: runErr}
	}
	fr, perr := ParseFreezeResult(line)
	switch {
	case perr != nil:
		return FreezeResult{}, &CallError{Script: Freeze, Outcome: Unknown, Line: line, Err: errors.Join(runErr, perr)}
	case fr.OK && runErr != nil:
		return fr, &CallError{Script: Freeze, Outcome: Unknown, Line: line, Err: fmt.Errorf("the script reported ok, but its command failed: %w", runErr)}
	case fr.OK:
		return fr, nil
	case fr.Frozen:
		return fr, &CallError{Script: Freeze, Outcome: StillFrozen, Line: line,
			Err: fmt.Errorf("%s (still frozen: %s)", fr.Error, strings.Join(fr.StillFrozen, ", "))}
	default:
		return fr, &CallError{Script: Freeze, Outcome: Refused, Line: line, Err: errors.New(fr.Error)}
	}
}

// RunThaw runs thaw.sh on the instance with p and returns its result. It succeeds only when the
// script reports ok and, unless p.NoProbe, its write probe finished; otherwise the error is a
// *CallError (StillFrozen when the script ran and did not thaw everything, Unknown otherwise),
// with the result whenever its line could be read (a failed thaw can still report that a
// watchdog fired).
func RunThaw(ctx context.Context, r Runner, instanceID string, p ThawParams) (ThawResult, error) {
	line, runErr := r.Run(ctx, instanceID, Thaw, p.Args())
	if len(line) == 0 {
		if runErr == nil {
			runErr = errors.New("the command returned no result line")
		}
		return ThawResult{}, &CallError{Script: Thaw, Outcome: Unknown, Err: runErr}
	}
	tr, perr := ParseThawResult(line)
	switch {
	case perr != nil:
		return ThawResult{}, &CallError{Script: Thaw, Outcome: Unknown, Line: line, Err: errors.Join(runErr, perr)}
	case !tr.OK:
		return tr, &CallError{Script: Thaw, Outcome: StillFrozen, Line: line, Err: fmt.Errorf("thaw reported: %s", tr.Error)}
	case runErr != nil:
		return tr, &CallError{Script: Thaw, Outcome: Unknown, Line: line, Err: fmt.Errorf("the script reported ok, but its command failed: %w", runErr)}
	case !tr.ProbeOK && !p.NoProbe:
		return tr, &CallError{Script: Thaw, Outcome: StillFrozen, Line: line,
			Err: fmt.Errorf("thawed %v, but the write probe did not finish: a mount may still be frozen", tr.Thawed)}
	}
	return tr, nil
}
