// Package ssmx runs the embedded host scripts on EC2 instances through SSM Run Command
// (fleet.HostRunner): one Command document per script, SendCommand to one instance, then a fast
// poll of GetCommandInvocation, because freeze and thaw sit inside the window in which the
// host's writes are blocked and every poll interval adds to it.
package ssmx

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	awsx "github.com/pgfleet/pgfleet/shared/aws"
	"github.com/pgfleet/pgfleet/shared/fleet"
	"github.com/pgfleet/pgfleet/shared/hostscripts"
	"github.com/pgfleet/pgfleet/shared/logctx"
)

// CommandAPI is the part of SSM the Runner calls.
type CommandAPI interface {
	SendCommand(ctx context.Context, params *ssm.SendCommandInput, optFns ...func(*ssm.Options)) (*ssm.SendCommandOutput, error)
	GetCommandInvocation(ctx context.Context, params *ssm.GetCommandInvocationInput, optFns ...func(*ssm.Options)) (*ssm.GetCommandInvocationOutput, error)
	CancelCommand(ctx context.Context, params *ssm.CancelCommandInput, optFns ...func(*ssm.Options)) (*ssm.CancelCommandOutput, error)
}

var (
	_ CommandAPI                        = (*ssm.Client)(nil)
	_ ssm.GetCommandInvocationAPIClient = CommandAPI(nil)
	_ fleet.HostRunner                  = (*Runner)(nil)
)

func noSDKRetries(o *ssm.Options) { o.RetryMaxAttempts = 1 }

// Poll paces GetCommandInvocation: the first wait, its growth factor and the largest wait.
// MaxWait bounds the whole wait when the caller's context has no earlier deadline.
type Poll struct {
	Initial time.Duration
	Max     time.Duration
	Factor  float64
	MaxWait time.Duration
}

// DefaultPoll starts at 100 ms: a freeze that finishes in 300 ms is seen within ~100 ms.
var DefaultPoll = Poll{Initial: 100 * time.Millisecond, Max: time.Second, Factor: 1.5, MaxWait: 15 * time.Minute}

// Defaults of a Runner.
const (
	// DefaultDeliveryTimeout is SendCommand's TimeoutSeconds: how long SSM may try to reach an
	// agent before the command fails with DeliveryTimedOut. 30 s is the API's minimum; a host
	// that cannot be reached that fast must not be frozen late.
	DefaultDeliveryTimeout = 30 * time.Second
	// DefaultCancelTimeout bounds the best-effort CancelCommand of an abandoned command.
	DefaultCancelTimeout = 5 * time.Second
	minDeliveryTimeout   = 30 * time.Second
	maxDeliveryTimeout   = 30 * 24 * time.Hour
	invocationNotVisible = "InvocationDoesNotExist"
)

// Runner runs host scripts with SSM Run Command.
type Runner struct {
	api    CommandAPI
	prefix string

	// DeliveryTimeout is SendCommand's TimeoutSeconds (clamped to the API's 30 s - 30 days).
	DeliveryTimeout time.Duration
	// Poll paces the wait for the result.
	Poll Poll
	// CancelTimeout bounds the CancelCommand sent when the caller gives up.
	CancelTimeout time.Duration
	// LogGroup, when set, also sends the command output to this CloudWatch Logs group.
	LogGroup string
	// Log receives one line per command: script, instance, command id, status and durations,
	// when the context carries no logger of its own (logctx).
	// Parameter values are never logged.
	Log *slog.Logger
}

// NewRunner returns a Runner that sends script s as the document documentPrefix+s (for example
// "pgfleet-freeze").
func NewRunner(api CommandAPI, documentPrefix string) *Runner {
	return &Runner{
		api:             api,
		prefix:          documentPrefix,
		DeliveryTimeout: DefaultDeliveryTimeout,
		Poll:            DefaultPoll,
		CancelTimeout:   DefaultCancelTimeout,
		Log:             slog.Default(),
	}
}

// DocumentName is the SSM document that runs a script.
func (r *Runner) DocumentName(script hostscripts.Name) string { return r.prefix + string(script) }

// CommandError is a command that reached a terminal status other than Success.
type CommandError struct {
	Script     hostscripts.Name
	InstanceID string
	CommandID  string
	Status     types.CommandInvocationStatus
	Details    string
	// ExitCode is the script's exit code (-1 when it never ran).
	ExitCode int32
	// Stderr is the end of the script's standard error.
	Stderr string
	// Result is the script's JSON result line, if it printed one.
	Result []byte
}

func (e *CommandError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s on %s (command %s): status %s", e.Script, e.InstanceID, e.CommandID, e.Status)
	if e.Details != "" && e.Details != string(e.Status) {
		fmt.Fprintf(&b, " (%s)", e.Details)
	}
	fmt.Fprintf(&b, ", exit code %d", e.ExitCode)
	if e.Stderr != "" {
		fmt.Fprintf(&b, ", stderr: %s", e.Stderr)
	}
	if len(e.Result) > 0 {
		fmt.Fprintf(&b, ", result: %s", e.Result)
	}
	return b.String()
}

// Run implements fleet.HostRunner. A command that ends in any status but Success returns a
// *CommandError, together with the script's JSON result line when it printed one. When ctx ends
// first, the command is cancelled (best effort) and ctx's error is returned.
func (r *Runner) Run(ctx context.Context, instanceID string, script hostscripts.Name, args hostscripts.Args) ([]byte, error) {
	params, err := args.SSMParameters(script)
	if err != nil {
		return nil, fmt.Errorf("run %s on %s: %w", script, instanceID, err)
	}
	start := time.Now()
	in := &ssm.SendCommandInput{
		DocumentName:   aws.String(r.DocumentName(script)),
		InstanceIds:    []string{instanceID},
		Parameters:     params,
		TimeoutSeconds: aws.Int32(int32(min(max(r.DeliveryTimeout, minDeliveryTimeout), maxDeliveryTimeout) / time.Second)),
		Comment:        aws.String("pgfleet " + string(script)),
	}
	if r.LogGroup != "" {
		in.CloudWatchOutputConfig = &types.CloudWatchOutputConfig{CloudWatchOutputEnabled: true, CloudWatchLogGroupName: aws.String(r.LogGroup)}
	}
	// Sent once, never retried by the SDK: a retry after an answer lost on the way back would
	// run the script twice (a second freeze is refused, and the first would then be thawed only
	// by its watchdog). A failed send is an unknown outcome, and the caller thaws.
	sent, err := r.api.SendCommand(ctx, in, noSDKRetries)
	if err != nil {
		return nil, fmt.Errorf("send %s to %s: %w", script, instanceID, err)
	}
	if sent.Command == nil || aws.ToString(sent.Command.CommandId) == "" {
		return nil, fmt.Errorf("send %s to %s: no command id in the response", script, instanceID)
	}
	id := aws.ToString(sent.Command.CommandId)
	log := r.log(ctx).With("script", string(script), "instance", instanceID, "command_id", id)
	sendMS := time.Since(start).Milliseconds()

	inv, polls, err := r.wait(ctx, id, instanceID)
	if err != nil {
		r.cancel(ctx, log, id, instanceID)
		log.Warn("host command abandoned", "send_ms", sendMS, "ms", time.Since(start).Milliseconds(), "polls", polls, "error", err.Error())
		return nil, fmt.Errorf("%s on %s (command %s): %w", script, instanceID, id, err)
	}
	log.Info("host command finished", "status", string(inv.Status), "exit_code", inv.ResponseCode,
		"send_ms", sendMS, "ms", time.Since(start).Milliseconds(), "polls", polls)

	line, lerr := hostscripts.LastJSONLine([]byte(aws.ToString(inv.StandardOutputContent)))
	if inv.Status != types.CommandInvocationStatusSuccess {
		return line, &CommandError{
			Script: script, InstanceID: instanceID, CommandID: id,
			Status: inv.Status, Details: aws.ToString(inv.StatusDetails), ExitCode: inv.ResponseCode,
			Stderr: tail(aws.ToString(inv.StandardErrorContent), 500), Result: line,
		}
	}
	if lerr != nil {
		return nil, fmt.Errorf("%s on %s (command %s) succeeded but printed no JSON result line: %w", script, instanceID, id, lerr)
	}
	return line, nil
}

// wait polls GetCommandInvocation until a terminal status, an error or the end of ctx.
func (r *Runner) wait(ctx context.Context, commandID, instanceID string) (*ssm.GetCommandInvocationOutput, int, error) {
	p := r.Poll
	if p.Initial <= 0 {
		p = DefaultPoll
	}
	if p.MaxWait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.MaxWait)
		defer cancel()
	}
	in := &ssm.GetCommandInvocationInput{CommandId: aws.String(commandID), InstanceId: aws.String(instanceID)}
	delay := p.Initial
	last := "not yet visible"
	polls := 0
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, polls, fmt.Errorf("gave up while the command was %s: %w", last, context.Cause(ctx))
		case <-timer.C:
		}
		polls++
		out, err := r.api.GetCommandInvocation(ctx, in)
		switch {
		case awsx.IsCode(err, invocationNotVisible):
			// SSM makes an invocation visible a moment after SendCommand returns.
		case err != nil && ctx.Err() != nil:
			return nil, polls, fmt.Errorf("gave up while the command was %s: %w", last, context.Cause(ctx))
		case err != nil:
			return nil, polls, fmt.Errorf("get command invocation: %w", err)
		case terminal(out.Status):
			return out, polls, nil
		default:
			last = string(out.Status)
		}
		delay = min(time.Duration(float64(delay)*p.Factor), p.Max)
		if delay <= 0 {
			delay = p.Initial
		}
		timer.Reset(delay)
	}
}

// terminal reports whether an invocation status is final.
func terminal(s types.CommandInvocationStatus) bool {
	switch s {
	case types.CommandInvocationStatusSuccess,
		types.CommandInvocationStatusFailed,
		types.CommandInvocationStatusCancelled,
		types.CommandInvocationStatusTimedOut:
		return true
	}
	// Status details that name final states, should they ever show as the status.
	switch string(s) {
	case "DeliveryTimedOut", "ExecutionTimedOut", "Undeliverable", "Terminated":
		return true
	}
	return false
}

// cancel asks SSM to cancel an abandoned command, with a context of its own: the caller's is
// usually done by now.
func (r *Runner) cancel(ctx context.Context, log *slog.Logger, commandID, instanceID string) {
	timeout := r.CancelTimeout
	if timeout <= 0 {
		timeout = DefaultCancelTimeout
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if _, err := r.api.CancelCommand(cctx, &ssm.CancelCommandInput{CommandId: aws.String(commandID), InstanceIds: []string{instanceID}}); err != nil {
		log.Warn("cancel abandoned host command", "error", err.Error())
	}
}

// log is the run's logger from ctx (cluster, request id, step), else Log, else slog's default.
func (r *Runner) log(ctx context.Context) *slog.Logger { return logctx.From(ctx, r.Log) }

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
