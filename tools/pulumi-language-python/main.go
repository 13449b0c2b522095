// Command pulumi-language-python is virtstack's Pulumi language host for
// Python programs. The Pulumi engine starts it, reads the port of its gRPC
// server from the first line of stdout, and then asks it to run the program
// (see host.go). Everything the program prints goes to our stdout/stderr,
// which the engine shows to the user.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// version is reported to the engine; it matches the sdk/v3 release whose
// protocol and exec script this host is built against.
const version = "3.274.1"

// execScriptName is the upstream Python driver that configures the pulumi
// SDK from its flags and then runs the user's program; it is installed next
// to this binary.
const execScriptName = "pulumi-language-python-exec"

// engineCheckInterval is how often we make sure the engine is still alive, so
// that an engine that died without killing us does not leave us (and a
// running program) behind.
const engineCheckInterval = 30 * time.Second

// options are the command-line settings the engine hands to language hosts.
type options struct {
	engine  string // positional: address of the engine's gRPC server
	tracing string // tracing endpoint, forwarded to the program
	root    string // project root, used only when Pulumi.yaml info is missing
	verbose bool   // -v=N with N > 0 together with --logtostderr
}

// parseArgs reads the flags the engine passes (see buildPluginArguments in
// sdk/v3's resource/plugin package) by hand: the flag package aborts on an
// unknown flag, and a newer engine may well pass flags we do not know.
// Unknown flags are skipped; "--name value" is only assumed for flags we
// know take a value, so an unknown flag never swallows the engine address.
func parseArgs(args []string) options {
	var o options
	logToStderr, level := false, 0
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			if i+1 < len(args) {
				o.engine = args[len(args)-1]
			}
			break
		}
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			// The engine puts its address last; keep the last positional.
			o.engine = arg
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		switch name {
		case "tracing", "root":
			if !hasValue && i+1 < len(args) {
				i++
				value = args[i]
			}
			if name == "tracing" {
				o.tracing = value
			} else {
				o.root = value
			}
		case "logtostderr":
			logToStderr = !hasValue || value == "true"
		case "v":
			level, _ = strconv.Atoi(value)
		}
	}
	o.verbose = logToStderr && level > 0
	return o
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	opts := parseArgs(os.Args[1:])

	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("locating own binary: %w", err)
	}

	// The engine stops plugins with SIGINT to their process group, then
	// SIGKILL; SIGINT/SIGTERM and a vanished engine all lead to a clean exit
	// that kills any program still running.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	h := newHost(ctx, opts, filepath.Join(filepath.Dir(self), execScriptName))

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	srv := grpc.NewServer()
	pulumirpc.RegisterLanguageRuntimeServer(srv, h)

	if opts.engine != "" {
		conn, err := grpc.NewClient(opts.engine, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("connecting to engine %s: %w", opts.engine, err)
		}
		defer conn.Close()
		go watchEngine(ctx, healthpb.NewHealthClient(conn), cancel)
	}

	// GracefulStop waits for in-flight Runs, which return promptly because
	// cancelling ctx has killed their programs. Serve returns as soon as the
	// listener closes, so we wait for GracefulStop too before exiting.
	stopped := make(chan struct{})
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
		close(stopped)
	}()

	// The engine expects exactly the port number as the first stdout line.
	fmt.Printf("%d\n", lis.Addr().(*net.TCPAddr).Port)

	if err := srv.Serve(lis); err != nil {
		return fmt.Errorf("serving: %w", err)
	}
	<-stopped
	return nil
}

// watchEngine calls cancel once the engine stops answering. The engine need
// not implement the health service: any answer, even Unimplemented, shows it
// is alive.
func watchEngine(ctx context.Context, health healthpb.HealthClient, cancel context.CancelFunc) {
	ticker := time.NewTicker(engineCheckInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			checkCtx, done := context.WithTimeout(ctx, engineCheckInterval)
			_, err := health.Check(checkCtx, &healthpb.HealthCheckRequest{})
			done()
			if err != nil && status.Code(err) != codes.Unimplemented && ctx.Err() == nil {
				cancel()
				return
			}
		}
	}
}
