package ssmx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/pgfleet/pgfleet/shared/aws/ssmx"
	"github.com/pgfleet/pgfleet/shared/hostscripts"
	"github.com/pgfleet/pgfleet/shared/local/moto"
)

var freezeArgs = hostscripts.Args{
	"pgdata":           "/data/pg/15/main",
	"mounts":           "/data/pg,/data/wal",
	"watchdog-seconds": "12",
	"port":             "", // empty: the script's default, not sent
}

var fastPoll = ssmx.Poll{Initial: time.Millisecond, Max: 2 * time.Millisecond, Factor: 1.5, MaxWait: 10 * time.Second}

// Against moto: the document exists, SendCommand carries exactly the validated arguments, and
// moto's empty Success output is reported as a missing result line.
func TestRunAgainstMoto(t *testing.T) {
	srv := moto.StartForTest(t)
	ctx := context.Background()
	rec := &moto.Recorder{}
	cfg, err := moto.Config(ctx, srv.URL, config.WithAPIOptions([]func(*middleware.Stack) error{rec.Middleware}))
	if err != nil {
		t.Fatal(err)
	}
	instanceID := runInstance(t, ec2.NewFromConfig(cfg))
	client := ssm.NewFromConfig(cfg)
	createDocument(t, client, "pgfleet-", hostscripts.Freeze)

	var logs bytes.Buffer
	r := ssmx.NewRunner(client, "pgfleet-")
	r.Poll = fastPoll
	r.Log = slog.New(slog.NewJSONHandler(&logs, nil))
	line, err := r.Run(ctx, instanceID, hostscripts.Freeze, freezeArgs)
	if err == nil || !strings.Contains(err.Error(), "no JSON result line") || line != nil {
		t.Fatalf("Run = %q, %v; want no line and a \"no JSON result line\" error", line, err)
	}

	sends := rec.Inputs("SendCommand")
	if len(sends) != 1 {
		t.Fatalf("%d SendCommand calls, want 1", len(sends))
	}
	in := sends[0].(*ssm.SendCommandInput)
	want := map[string][]string{"PGData": {"/data/pg/15/main"}, "Mounts": {"/data/pg,/data/wal"}, "WatchdogSeconds": {"12"}}
	if !maps.EqualFunc(in.Parameters, want, func(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }) {
		t.Fatalf("SendCommand parameters = %v, want exactly %v", in.Parameters, want)
	}
	if aws.ToString(in.DocumentName) != "pgfleet-freeze" || len(in.InstanceIds) != 1 || in.InstanceIds[0] != instanceID || aws.ToInt32(in.TimeoutSeconds) != 30 {
		t.Fatalf("SendCommand input: document %q, instances %v, timeout %d", aws.ToString(in.DocumentName), in.InstanceIds, aws.ToInt32(in.TimeoutSeconds))
	}
	if in.CloudWatchOutputConfig != nil {
		t.Fatalf("CloudWatch output enabled without a log group: %+v", in.CloudWatchOutputConfig)
	}
	if n := rec.Count("GetCommandInvocation"); n < 1 {
		t.Fatalf("%d GetCommandInvocation calls", n)
	}

	// The log names the command and its timing, and no parameter value.
	out := logs.String()
	for _, w := range []string{`"command_id"`, `"script":"freeze"`, `"instance":"` + instanceID, `"status":"Success"`, `"ms"`} {
		if !strings.Contains(out, w) {
			t.Errorf("log lacks %s: %s", w, out)
		}
	}
	for _, v := range []string{`"/data/pg`, `"12"`} {
		if strings.Contains(out, v) {
			t.Errorf("log contains a parameter value %q: %s", v, out)
		}
	}

	// Invalid arguments are refused before anything is sent.
	if _, err := r.Run(ctx, instanceID, hostscripts.Freeze, hostscripts.Args{"mounts": "/data;rm -rf /", "pgdata": "/data/pg"}); err == nil {
		t.Fatal("shell metacharacters accepted")
	}
	if _, err := r.Run(ctx, instanceID, hostscripts.Freeze, hostscripts.Args{"pgdata": "/data/pg"}); err == nil {
		t.Fatal("missing required mounts accepted")
	}
	if n := rec.Count("SendCommand"); n != 1 {
		t.Fatalf("%d SendCommand calls after refused arguments, want still 1", n)
	}
}

// A failed command: the invocation is invisible twice, in progress once, then Failed with a JSON
// result line; Run returns the line and a CommandError carrying status, details, exit code,
// stderr and the line.
func TestRunFailedCommand(t *testing.T) {
	api := &fakeSSM{results: []invocation{
		{err: &types.InvocationDoesNotExist{Message: aws.String("not yet")}},
		{err: &types.InvocationDoesNotExist{Message: aws.String("not yet")}},
		{out: &ssm.GetCommandInvocationOutput{Status: types.CommandInvocationStatusInProgress, ResponseCode: -1}},
		{out: &ssm.GetCommandInvocationOutput{
			Status:                types.CommandInvocationStatusFailed,
			StatusDetails:         aws.String("Failed"),
			ResponseCode:          3,
			StandardOutputContent: aws.String("checking mounts\n{\"ok\":false,\"action\":\"freeze\",\"error\":\"/ is in mounts\"}\n"),
			StandardErrorContent:  aws.String(strings.Repeat("x", 2000) + "freeze refused: / is in mounts"),
		}},
	}}
	r := ssmx.NewRunner(api, "pgfleet-")
	r.Poll = fastPoll
	r.Log = slog.New(slog.DiscardHandler)
	line, err := r.Run(context.Background(), "i-0123", hostscripts.Freeze, freezeArgs)

	wantLine := `{"ok":false,"action":"freeze","error":"/ is in mounts"}`
	if string(line) != wantLine {
		t.Fatalf("line = %q, want %q", line, wantLine)
	}
	var ce *ssmx.CommandError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *ssmx.CommandError", err)
	}
	if ce.Status != types.CommandInvocationStatusFailed || ce.ExitCode != 3 || ce.CommandID != "cmd-1" || string(ce.Result) != wantLine {
		t.Fatalf("CommandError = %+v", ce)
	}
	msg := err.Error()
	for _, w := range []string{"status Failed", "exit code 3", "freeze refused: / is in mounts", wantLine, "cmd-1", "i-0123"} {
		if !strings.Contains(msg, w) {
			t.Errorf("error lacks %q: %s", w, msg)
		}
	}
	if len(ce.Stderr) > 600 {
		t.Errorf("stderr not cut to its tail: %d bytes", len(ce.Stderr))
	}
	if api.polls != 4 {
		t.Fatalf("%d GetCommandInvocation calls, want 4", api.polls)
	}
	if api.cancels != 0 {
		t.Fatalf("a finished command was cancelled")
	}
}

// Success with a result line after noise returns the last JSON line.
func TestRunSuccess(t *testing.T) {
	api := &fakeSSM{results: []invocation{
		{out: &ssm.GetCommandInvocationOutput{Status: types.CommandInvocationStatusPending, ResponseCode: -1}},
		{out: &ssm.GetCommandInvocationOutput{Status: types.CommandInvocationStatusSuccess, StandardOutputContent: aws.String("{\"debug\":1}\nnoise\n{\"ok\":true,\"frozen\":true}\n")}},
	}}
	r := ssmx.NewRunner(api, "pgfleet-")
	r.Poll = fastPoll
	r.LogGroup = "/pgfleet/commands"
	r.Log = slog.New(slog.DiscardHandler)
	line, err := r.Run(context.Background(), "i-0123", hostscripts.Thaw, hostscripts.Args{"mounts": "/data"})
	if err != nil || string(line) != `{"ok":true,"frozen":true}` {
		t.Fatalf("Run = %q, %v", line, err)
	}
	if api.sent == nil || aws.ToString(api.sent.DocumentName) != "pgfleet-thaw" ||
		api.sent.CloudWatchOutputConfig == nil || aws.ToString(api.sent.CloudWatchOutputConfig.CloudWatchLogGroupName) != "/pgfleet/commands" {
		t.Fatalf("SendCommand input %+v", api.sent)
	}
}

// Terminal statuses other than Failed end the wait too.
func TestRunTerminalStatuses(t *testing.T) {
	for _, st := range []types.CommandInvocationStatus{types.CommandInvocationStatusCancelled, types.CommandInvocationStatusTimedOut, "Undeliverable", "Terminated", "DeliveryTimedOut", "ExecutionTimedOut"} {
		t.Run(string(st), func(t *testing.T) {
			api := &fakeSSM{results: []invocation{{out: &ssm.GetCommandInvocationOutput{Status: st, StatusDetails: aws.String("DeliveryTimedOut"), ResponseCode: -1}}}}
			r := ssmx.NewRunner(api, "pgfleet-")
			r.Poll = fastPoll
			r.Log = slog.New(slog.DiscardHandler)
			line, err := r.Run(context.Background(), "i-1", hostscripts.Thaw, hostscripts.Args{"mounts": "/data"})
			var ce *ssmx.CommandError
			if !errors.As(err, &ce) || ce.Status != st || line != nil || !strings.Contains(err.Error(), "DeliveryTimedOut") {
				t.Fatalf("Run = %q, %v", line, err)
			}
		})
	}
}

// When the caller's context ends first, the command is cancelled with a fresh context and the
// context's error is returned.
func TestRunGivesUpAndCancels(t *testing.T) {
	api := &fakeSSM{stuck: true}
	r := ssmx.NewRunner(api, "pgfleet-")
	r.Poll = fastPoll
	r.Log = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.Run(ctx, "i-1", hostscripts.Freeze, freezeArgs)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "InProgress") {
		t.Fatalf("err = %v, want DeadlineExceeded naming the last status", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("gave up after %s", time.Since(start))
	}
	if api.cancels != 1 || api.cancelCtxErr != nil {
		t.Fatalf("cancels = %d (ctx err at cancel %v), want 1 with a live context", api.cancels, api.cancelCtxErr)
	}
}

// MaxWait bounds a wait whose context has no deadline.
func TestRunMaxWait(t *testing.T) {
	api := &fakeSSM{stuck: true}
	r := ssmx.NewRunner(api, "pgfleet-")
	r.Poll = ssmx.Poll{Initial: time.Millisecond, Max: time.Millisecond, Factor: 2, MaxWait: 30 * time.Millisecond}
	r.Log = slog.New(slog.DiscardHandler)
	if _, err := r.Run(context.Background(), "i-1", hostscripts.Freeze, freezeArgs); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
}

// A GetCommandInvocation error other than "not visible yet" ends the wait and cancels.
func TestRunPollError(t *testing.T) {
	api := &fakeSSM{results: []invocation{{err: &smithy.GenericAPIError{Code: "InvalidCommandId", Message: "bad id"}}}}
	r := ssmx.NewRunner(api, "pgfleet-")
	r.Poll = fastPoll
	r.Log = slog.New(slog.DiscardHandler)
	_, err := r.Run(context.Background(), "i-1", hostscripts.Freeze, freezeArgs)
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidCommandId" || api.polls != 1 || api.cancels != 1 {
		t.Fatalf("err = %v, polls %d, cancels %d", err, api.polls, api.cancels)
	}
}

// A failed SendCommand is returned as is, nothing polled.
func TestRunSendError(t *testing.T) {
	api := &fakeSSM{sendErr: &types.InvalidDocument{Message: aws.String("no such document")}}
	r := ssmx.NewRunner(api, "pgfleet-")
	r.Log = slog.New(slog.DiscardHandler)
	_, err := r.Run(context.Background(), "i-1", hostscripts.Thaw, hostscripts.Args{"mounts": "/data"})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidDocument" || api.polls != 0 {
		t.Fatalf("err = %v, polls %d", err, api.polls)
	}
}

// --- builders and fakes ---

type invocation struct {
	out *ssm.GetCommandInvocationOutput
	err error
}

// fakeSSM answers GetCommandInvocation from a script of results, or InProgress forever when stuck.
type fakeSSM struct {
	mu           sync.Mutex
	sendErr      error
	sent         *ssm.SendCommandInput
	results      []invocation
	stuck        bool
	polls        int
	cancels      int
	cancelCtxErr error
}

func (f *fakeSSM) SendCommand(_ context.Context, in *ssm.SendCommandInput, _ ...func(*ssm.Options)) (*ssm.SendCommandOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = in
	if f.sendErr != nil {
		return nil, f.sendErr
	}
	return &ssm.SendCommandOutput{Command: &types.Command{CommandId: aws.String("cmd-1")}}, nil
}

func (f *fakeSSM) GetCommandInvocation(_ context.Context, in *ssm.GetCommandInvocationInput, _ ...func(*ssm.Options)) (*ssm.GetCommandInvocationOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.polls++
	if aws.ToString(in.CommandId) != "cmd-1" {
		return nil, errors.New("wrong command id")
	}
	if f.stuck {
		return &ssm.GetCommandInvocationOutput{Status: types.CommandInvocationStatusInProgress, ResponseCode: -1}, nil
	}
	if len(f.results) == 0 {
		return nil, errors.New("polled past the scripted results")
	}
	r := f.results[0]
	f.results = f.results[1:]
	return r.out, r.err
}

func (f *fakeSSM) CancelCommand(ctx context.Context, _ *ssm.CancelCommandInput, _ ...func(*ssm.Options)) (*ssm.CancelCommandOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancels++
	f.cancelCtxErr = ctx.Err()
	return &ssm.CancelCommandOutput{}, nil
}

// createDocument registers the script's Command document with the parameters of its Spec, the
// way the CDK stack does.
func createDocument(t *testing.T, c *ssm.Client, prefix string, name hostscripts.Name) {
	t.Helper()
	spec, err := hostscripts.SpecOf(name)
	if err != nil {
		t.Fatal(err)
	}
	params := map[string]any{}
	for _, p := range spec.Params {
		d := map[string]any{"type": "String", "description": p.Description, "allowedPattern": p.Pattern}
		if !p.Required {
			d["default"] = p.Default
		}
		params[p.SSMName] = d
	}
	doc, err := json.Marshal(map[string]any{
		"schemaVersion": "2.2",
		"description":   spec.Description,
		"parameters":    params,
		"mainSteps": []any{map[string]any{
			"action": "aws:runShellScript", "name": string(name),
			"inputs": map[string]any{"runCommand": []string{"echo run " + string(name)}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateDocument(context.Background(), &ssm.CreateDocumentInput{
		Name: aws.String(prefix + string(name)), Content: aws.String(string(doc)),
		DocumentType: types.DocumentTypeCommand, DocumentFormat: types.DocumentFormatJson,
	})
	if err != nil {
		t.Fatalf("create document: %v", err)
	}
}

func runInstance(t *testing.T, c *ec2.Client) string {
	t.Helper()
	out, err := c.RunInstances(context.Background(), &ec2.RunInstancesInput{ImageId: aws.String("ami-12c6146b"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	if err != nil {
		t.Fatalf("run instance: %v", err)
	}
	return aws.ToString(out.Instances[0].InstanceId)
}

// TestSendCommandIsSentOnce: with the SDK's default retryer, a 503 (the call may have been
// carried out) is not followed by a second SendCommand: the script must not run twice.
func TestSendCommandIsSentOnce(t *testing.T) {
	url, requests := moto.Unavailable(t)
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion(moto.Region),
		config.WithCredentialsProvider(aws.AnonymousCredentials{}), config.WithBaseEndpoint(url))
	if err != nil {
		t.Fatal(err)
	}
	r := ssmx.NewRunner(ssm.NewFromConfig(cfg), "pgfleet-")
	r.Poll = fastPoll
	_, err = r.Run(context.Background(), "i-0123456789abcdef0", hostscripts.Freeze, freezeArgs)
	if err == nil {
		t.Fatal("no error from an endpoint that answers 503")
	}
	if n := requests(); n != 1 {
		t.Errorf("%d SendCommand requests; want exactly 1 (the SDK retried a call that is not safe to repeat)", n)
	}
}
