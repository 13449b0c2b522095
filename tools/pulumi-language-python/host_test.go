package main

// Tests of the LanguageRuntime handlers through a real gRPC connection (an
// in-memory listener, so nothing touches the network), the way the engine
// calls them. The Python interpreter is faked by a shell script that records
// its arguments and environment, so no Python or Pulumi SDK is needed.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// fakePython is the interpreter's stand-in: `--version` answers like
// CPython; anything else records one argument per line in $FAKE_ARGS and the
// environment in $FAKE_ENV, then sleeps $FAKE_SLEEP seconds and exits with
// $FAKE_EXIT.
const fakePython = `#!/bin/sh
if [ "$1" = "--version" ]; then echo "Python 3.99.7"; exit 0; fi
: > "$FAKE_ARGS"
for a in "$@"; do printf '%s\n' "$a" >> "$FAKE_ARGS"; done
env > "$FAKE_ENV"
# exec: the host kills this process; a child sleep would outlive it and keep
# the test binary's stdout open.
if [ -n "$FAKE_SLEEP" ]; then exec sleep "$FAKE_SLEEP"; fi
exit "${FAKE_EXIT:-0}"
`

type fixture struct {
	client   pulumirpc.LanguageRuntimeClient
	cancel   context.CancelFunc // shuts the host down, as SIGTERM would
	dir      string
	python   string
	argsFile string
	envFile  string
}

// start serves a fresh host on an in-memory listener and points
// PULUMI_PYTHON_CMD at a fake interpreter.
func start(t *testing.T, opts options) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{
		dir:      dir,
		python:   filepath.Join(dir, "fakepython"),
		argsFile: filepath.Join(dir, "args"),
		envFile:  filepath.Join(dir, "env"),
	}
	writeExecutable(t, f.python, fakePython)
	t.Setenv("PULUMI_PYTHON_CMD", f.python)
	t.Setenv("FAKE_ARGS", f.argsFile)
	t.Setenv("FAKE_ENV", f.envFile)
	t.Setenv("FAKE_EXIT", "0")
	t.Setenv("FAKE_SLEEP", "")

	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	h := newHost(ctx, opts, "/opt/exec-script")
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	pulumirpc.RegisterLanguageRuntimeServer(srv, h)
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return lis.Dial() }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = conn.Close()
		srv.Stop()
	})
	f.client = pulumirpc.NewLanguageRuntimeClient(conn)
	return f
}

func writeExecutable(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) args(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(f.argsFile)
	if err != nil {
		t.Fatalf("the program was not run: %v", err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

func (f *fixture) env(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(f.envFile)
	if err != nil {
		t.Fatalf("the program was not run: %v", err)
	}
	return strings.Split(string(data), "\n")
}

// flag returns the value after name in args, and whether name is there.
func flag(args []string, name string) (string, bool) {
	i := slices.Index(args, name)
	if i < 0 || i+1 >= len(args) {
		return "", false
	}
	return args[i+1], true
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func virtualenvInfo(root, venv string) *pulumirpc.ProgramInfo {
	return &pulumirpc.ProgramInfo{
		RootDirectory:    root,
		ProgramDirectory: root,
		EntryPoint:       ".",
		Options: &structpb.Struct{Fields: map[string]*structpb.Value{
			"virtualenv": structpb.NewStringValue(venv),
		}},
	}
}

func TestPluginInfoReportsTheBuiltVersion(t *testing.T) {
	f := start(t, options{})
	info, err := f.client.GetPluginInfo(ctxT(t), &emptypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetVersion() != version {
		t.Errorf("version %q, want %q", info.GetVersion(), version)
	}
}

// The package-management calls are no-ops, but they must answer (not
// Unimplemented), or `pulumi up` and `pulumi install` fail.
func TestPackageManagementCallsSucceedEmpty(t *testing.T) {
	f := start(t, options{})
	ctx := ctxT(t)
	plugins, err := f.client.GetRequiredPlugins(ctx, &pulumirpc.GetRequiredPluginsRequest{})
	if err != nil || len(plugins.GetPlugins()) != 0 {
		t.Errorf("GetRequiredPlugins: %v, %v", plugins, err)
	}
	packages, err := f.client.GetRequiredPackages(ctx, &pulumirpc.GetRequiredPackagesRequest{})
	if err != nil || len(packages.GetPackages()) != 0 {
		t.Errorf("GetRequiredPackages: %v, %v", packages, err)
	}
	deps, err := f.client.GetProgramDependencies(ctx, &pulumirpc.GetProgramDependenciesRequest{})
	if err != nil || len(deps.GetDependencies()) != 0 {
		t.Errorf("GetProgramDependencies: %v, %v", deps, err)
	}
	prompts, err := f.client.RuntimeOptionsPrompts(ctx, &pulumirpc.RuntimeOptionsRequest{})
	if err != nil || len(prompts.GetPrompts()) != 0 {
		t.Errorf("RuntimeOptionsPrompts: %v, %v", prompts, err)
	}

	stream, err := f.client.InstallDependencies(ctx, &pulumirpc.InstallDependenciesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if msg, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("InstallDependencies: want a stream that ends at once, got %v, %v", msg, err)
	}
}

func TestAboutReportsTheInterpreter(t *testing.T) {
	f := start(t, options{})
	about, err := f.client.About(ctxT(t), &pulumirpc.AboutRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if about.GetExecutable() != f.python || about.GetVersion() != "3.99.7" {
		t.Errorf("About = %q %q, want %q 3.99.7", about.GetExecutable(), about.GetVersion(), f.python)
	}
}

func TestAboutPrefersTheVirtualenvOption(t *testing.T) {
	f := start(t, options{})
	venvPython := filepath.Join(f.dir, "venv", "bin", "python")
	writeExecutable(t, venvPython, fakePython)
	about, err := f.client.About(ctxT(t), &pulumirpc.AboutRequest{Info: virtualenvInfo(f.dir, "venv")})
	if err != nil {
		t.Fatal(err)
	}
	if about.GetExecutable() != venvPython {
		t.Errorf("executable %q, want the venv's %q", about.GetExecutable(), venvPython)
	}
}

func TestAboutFailsOnAMissingVirtualenv(t *testing.T) {
	f := start(t, options{})
	_, err := f.client.About(ctxT(t), &pulumirpc.AboutRequest{Info: virtualenvInfo(f.dir, "nowhere")})
	if err == nil || !strings.Contains(err.Error(), "'virtualenv' option") {
		t.Errorf("want an error naming the virtualenv option, got %v", err)
	}
}

func TestRunPassesTheEngineSettingsToTheExecScript(t *testing.T) {
	f := start(t, options{engine: "127.0.0.1:1", tracing: "file:trace"})
	program := filepath.Join(f.dir, "prog")
	resp, err := f.client.Run(ctxT(t), &pulumirpc.RunRequest{
		MonitorAddress:   "127.0.0.1:2",
		Project:          "proj",
		Stack:            "dev",
		Pwd:              f.dir,
		DryRun:           true,
		Parallel:         7,
		Organization:     "org",
		Config:           map[string]string{"proj:spec": "a.yaml"},
		ConfigSecretKeys: []string{"proj:token"},
		Args:             []string{"extra1", "extra2"},
		Info:             &pulumirpc.ProgramInfo{RootDirectory: f.dir, ProgramDirectory: program, EntryPoint: "."},
	})
	if err != nil || resp.GetError() != "" || resp.GetBail() {
		t.Fatalf("Run = %v, %v", resp, err)
	}
	args := f.args(t)
	if args[0] != "-u" || args[1] != "/opt/exec-script" {
		t.Errorf("want the exec script run unbuffered, got %q", args[:2])
	}
	for name, want := range map[string]string{
		"--monitor":        "127.0.0.1:2",
		"--project":        "proj",
		"--stack":          "dev",
		"--pwd":            f.dir,
		"--dry_run":        "true",
		"--parallel":       "7",
		"--engine":         "127.0.0.1:1",
		"--organization":   "org",
		"--root_directory": f.dir,
		"--tracing":        "file:trace",
	} {
		if got, ok := flag(args, name); !ok || got != want {
			t.Errorf("%s = %q (present %v), want %q", name, got, ok, want)
		}
	}
	// The program and its arguments come last, after all flags.
	if tail := args[len(args)-3:]; !slices.Equal(tail, []string{program, "extra1", "extra2"}) {
		t.Errorf("program and args = %q", tail)
	}

	env := f.env(t)
	for _, want := range []string{
		`PULUMI_CONFIG={"proj:spec":"a.yaml"}`,
		`PULUMI_CONFIG_SECRET_KEYS=["proj:token"]`,
		"PULUMI_PROJECT=proj",
		"PULUMI_STACK=dev",
		"PULUMI_DRY_RUN=true",
		"PULUMI_ORGANIZATION=org",
	} {
		if !slices.Contains(env, want) {
			t.Errorf("environment lacks %s", want)
		}
	}
}

// Unset optional settings must be left out, not passed as "", so that the
// SDK keeps its None defaults; empty config must still be valid JSON.
func TestRunLeavesOutUnsetOptionalSettings(t *testing.T) {
	f := start(t, options{})
	resp, err := f.client.Run(ctxT(t), &pulumirpc.RunRequest{Project: "p", Stack: "s", Pwd: f.dir, Program: "prog"})
	if err != nil || resp.GetError() != "" {
		t.Fatalf("Run = %v, %v", resp, err)
	}
	args := f.args(t)
	for _, name := range []string{"--engine", "--organization", "--root_directory", "--tracing"} {
		if slices.Contains(args, name) {
			t.Errorf("%s passed although unset: %q", name, args)
		}
	}
	if args[len(args)-1] != "prog" {
		t.Errorf("the deprecated Program field is not the program: %q", args)
	}
	env := f.env(t)
	for _, want := range []string{"PULUMI_CONFIG={}", "PULUMI_CONFIG_SECRET_KEYS=[]"} {
		if !slices.Contains(env, want) {
			t.Errorf("environment lacks %s", want)
		}
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "PULUMI_ORGANIZATION=") {
			t.Errorf("unset organization exported: %s", kv)
		}
	}
}

// Handshake is how an attached engine tells its address and the project
// root; later Runs must use both.
func TestHandshakeSettingsReachRun(t *testing.T) {
	f := start(t, options{engine: "old:1", root: "/old"})
	root := filepath.Join(f.dir, "root")
	_, err := f.client.Handshake(ctxT(t), &pulumirpc.LanguageHandshakeRequest{
		EngineAddress: "127.0.0.1:9", RootDirectory: &root,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.Run(ctxT(t), &pulumirpc.RunRequest{Pwd: f.dir, Program: "p"}); err != nil {
		t.Fatal(err)
	}
	args := f.args(t)
	if got, _ := flag(args, "--engine"); got != "127.0.0.1:9" {
		t.Errorf("--engine %q, want the handshake's", got)
	}
	if got, _ := flag(args, "--root_directory"); got != root {
		t.Errorf("--root_directory %q, want the handshake's %q", got, root)
	}
}

func TestRunActivatesTheVirtualenv(t *testing.T) {
	f := start(t, options{})
	t.Setenv("PYTHONHOME", "/somewhere/else")
	venv := filepath.Join(f.dir, "venv")
	writeExecutable(t, filepath.Join(venv, "bin", "python"), fakePython)
	resp, err := f.client.Run(ctxT(t), &pulumirpc.RunRequest{Pwd: f.dir, Info: virtualenvInfo(f.dir, "venv")})
	if err != nil || resp.GetError() != "" {
		t.Fatalf("Run = %v, %v", resp, err)
	}
	env := f.env(t)
	if !slices.Contains(env, "VIRTUAL_ENV="+venv) {
		t.Errorf("VIRTUAL_ENV not set to %s", venv)
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
		if strings.HasPrefix(kv, "PYTHONHOME=") {
			t.Errorf("PYTHONHOME must be unset in a venv, got %s", kv)
		}
	}
	if !strings.HasPrefix(path, filepath.Join(venv, "bin")+":") {
		t.Errorf("PATH %q does not start with the venv's bin", path)
	}
}

// How the program ends decides what the engine shows: a program error, a
// bail (the program already reported), or an interpreter problem.
func TestRunReportsHowTheProgramEnded(t *testing.T) {
	for _, tc := range []struct {
		exit      string
		wantError string
		wantBail  bool
	}{
		{exit: "0"},
		{exit: "32", wantBail: true},
		{exit: "3", wantError: "Program exited with non-zero exit code: 3"},
	} {
		t.Run("exit "+tc.exit, func(t *testing.T) {
			f := start(t, options{})
			t.Setenv("FAKE_EXIT", tc.exit)
			resp, err := f.client.Run(ctxT(t), &pulumirpc.RunRequest{Pwd: f.dir, Program: "p"})
			if err != nil {
				t.Fatalf("a program failure must not be an RPC error: %v", err)
			}
			if resp.GetError() != tc.wantError || resp.GetBail() != tc.wantBail {
				t.Errorf("Run = error %q bail %v, want %q %v", resp.GetError(), resp.GetBail(), tc.wantError, tc.wantBail)
			}
		})
	}
}

func TestRunWithoutAnInterpreterIsAProgramError(t *testing.T) {
	f := start(t, options{})
	t.Setenv("PULUMI_PYTHON_CMD", "no-such-python-virtstack")
	resp, err := f.client.Run(ctxT(t), &pulumirpc.RunRequest{Pwd: f.dir, Program: "p"})
	if err != nil {
		t.Fatalf("want the failure in the response, got RPC error %v", err)
	}
	if !strings.Contains(resp.GetError(), "no-such-python-virtstack") {
		t.Errorf("error %q does not name the interpreter", resp.GetError())
	}
}

// A cancelled call (engine gone) and a host shutdown (SIGTERM) must both
// kill the program rather than wait for it.
func TestRunKillsTheProgramOnCancelAndShutdown(t *testing.T) {
	for _, how := range []string{"call cancelled", "host shut down"} {
		t.Run(how, func(t *testing.T) {
			f := start(t, options{})
			t.Setenv("FAKE_SLEEP", "30")
			ctx, cancel := context.WithCancel(ctxT(t))
			defer cancel()
			stop := cancel
			if how == "host shut down" {
				stop = f.cancel
			}
			done := make(chan error, 1)
			began := time.Now()
			go func() {
				_, err := f.client.Run(ctx, &pulumirpc.RunRequest{Pwd: f.dir, Program: "p"})
				done <- err
			}()
			// Wait until the program runs, so that we stop a live process.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if _, err := os.Stat(f.envFile); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the program never started")
				}
			}
			stop()
			select {
			case err := <-done:
				if err == nil {
					t.Error("want an error for a cancelled run")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run still waits for a program that should have been killed")
			}
			if took := time.Since(began); took > 15*time.Second {
				t.Errorf("Run took %v: the program was not killed", took)
			}
		})
	}
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want options
	}{
		{"address only", []string{"127.0.0.1:5"}, options{engine: "127.0.0.1:5"}},
		{"engine flags", []string{"--tracing", "t", "-root=/r", "127.0.0.1:5"},
			options{engine: "127.0.0.1:5", tracing: "t", root: "/r"}},
		{"unknown flag does not swallow the address", []string{"--new-flag", "127.0.0.1:5"},
			options{engine: "127.0.0.1:5"}},
		{"verbose needs both", []string{"-v=3", "--logtostderr", "a:1"}, options{engine: "a:1", verbose: true}},
		{"level alone is quiet", []string{"-v=3", "a:1"}, options{engine: "a:1"}},
		{"logtostderr=false is quiet", []string{"-v=3", "--logtostderr=false", "a:1"}, options{engine: "a:1"}},
		{"after --, the last is the address", []string{"--tracing=t", "--", "x", "a:1"},
			options{engine: "a:1", tracing: "t"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseArgs(tc.args); got != tc.want {
				t.Errorf("parseArgs(%q) = %+v, want %+v", tc.args, got, tc.want)
			}
		})
	}
}

func TestEnvHelpersLastEntryWins(t *testing.T) {
	env := []string{"A=1", "B=2", "A=3"}
	if got := getEnv(env, "A"); got != "3" {
		t.Errorf("getEnv = %q, want the later entry 3", got)
	}
	got := setEnv(env, "A", "4")
	if !slices.Equal(got, []string{"B=2", "A=4"}) {
		t.Errorf("setEnv = %q", got)
	}
	if !slices.Equal(env, []string{"A=1", "B=2", "A=3"}) {
		t.Errorf("setEnv changed its input: %q", env)
	}
	// The JSON the SDK parses must round-trip.
	var cfg map[string]string
	py := python{}
	envs, err := programEnv(py, &pulumirpc.RunRequest{Config: map[string]string{"k": `"quoted"`}})
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(getEnv(envs, "PULUMI_CONFIG")), &cfg); err != nil || cfg["k"] != `"quoted"` {
		t.Errorf("PULUMI_CONFIG does not round-trip: %v %v", cfg, err)
	}
}
