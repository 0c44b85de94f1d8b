// Command pgfleet-local runs pgfleet's functions against a local site on this machine: `up` and
// `down` manage a site, `invoke` runs one handler with an event file, `demo` runs the whole story
// (site up, pgbench load, several backups, retention, WAL prune, tear down), and `serve-proxy`
// is the TLS proxy a detached site keeps in front of moto_server.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/pgfleet/pgfleet/shared/local/moto"
	"github.com/pgfleet/pgfleet/shared/local/site"
	"github.com/pgfleet/pgfleet/shared/metrics"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	slog.SetDefault(log)
	if err := run(ctx, log, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pgfleet-local:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: pgfleet-local up|down|invoke|demo|serve-proxy [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	root := fs.String("root", envOr("PGFLEET_SITE", site.DefaultRoot), "directory of the local site")
	switch args[0] {
	case "up":
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		self, err := os.Executable()
		if err != nil {
			return err
		}
		s, err := site.Up(ctx, site.Options{Root: *root, Detached: true, ProxyCommand: []string{self, "serve-proxy"}, PgbenchScale: 5, Log: log})
		if err != nil {
			return err
		}
		fmt.Printf("local site up at %s (state: %s/%s)\nrun a handler: make invoke FN=backup EVENT=events/backup-constant-input.json\ntear down:     make site-down\n", s.Root, s.Root, site.StateFile)
		return nil
	case "down":
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if err := site.DownRoot(ctx, *root); err != nil {
			return err
		}
		fmt.Println("local site at", *root, "torn down")
		return nil
	case "invoke":
		fn := fs.String("fn", "", "function: backup or walprune")
		event := fs.String("event", "", "event JSON file")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		payload, err := os.ReadFile(*event)
		if err != nil {
			return fmt.Errorf("read event: %w", err)
		}
		st, err := site.Load(*root)
		if err != nil {
			return err
		}
		h, err := site.Handler(ctx, st, *fn, log, metrics.NewEMF(os.Stderr))
		if err != nil {
			return err
		}
		out, err := lambda.NewHandler(h).Invoke(ctx, payload)
		if len(out) > 0 {
			var pretty json.RawMessage = out
			b, _ := json.MarshalIndent(pretty, "", "  ")
			fmt.Println(string(b))
		}
		return err
	case "demo":
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return demo(ctx, log, *root)
	case "serve-proxy":
		if len(args) != 3 {
			return errors.New("usage: pgfleet-local serve-proxy LISTEN_ADDR TARGET_URL")
		}
		return moto.ServeTLSProxy(ctx, args[1], args[2])
	default:
		return fmt.Errorf("unknown command %q: use up, down, invoke, demo or serve-proxy", args[0])
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
