package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// bailExitCode is what pulumi-language-python-exec exits with after it has
// already reported the failure to the engine itself; the engine must then not
// print a second, generic error.
const bailExitCode = 32

// host implements the parts of the LanguageRuntime service the engine needs
// to deploy Python programs. Plugin and package management are deliberately
// no-ops: virtstack provides its plugins locally and installs Python
// dependencies itself.
type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	ctx        context.Context // cancelled when the host shuts down
	execScript string
	tracing    string
	verbose    bool

	mu     sync.Mutex
	engine string // engine address, from the command line or Handshake
	root   string // project root, from -root or Handshake
}

func newHost(ctx context.Context, opts options, execScript string) *host {
	return &host{
		ctx:        ctx,
		execScript: execScript,
		tracing:    opts.tracing,
		verbose:    opts.verbose,
		engine:     opts.engine,
		root:       opts.root,
	}
}

func (h *host) logf(format string, args ...any) {
	if h.verbose {
		fmt.Fprintf(os.Stderr, "pulumi-language-python: "+format+"\n", args...)
	}
}

// Handshake is only sent when the engine attaches to an already running host
// (PULUMI_DEBUG_LANGUAGES); then it is how we learn the engine address.
func (h *host) Handshake(
	_ context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if req.GetEngineAddress() != "" {
		h.engine = req.GetEngineAddress()
	}
	if req.RootDirectory != nil {
		h.root = req.GetRootDirectory()
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

func (h *host) GetRequiredPlugins(
	context.Context, *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

func (h *host) GetRequiredPackages(
	context.Context, *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

// InstallDependencies ends the stream without output: the engine reads it to
// EOF and treats that as success.
func (h *host) InstallDependencies(
	*pulumirpc.InstallDependenciesRequest, grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse],
) error {
	return nil
}

func (h *host) RuntimeOptionsPrompts(
	context.Context, *pulumirpc.RuntimeOptionsRequest,
) (*pulumirpc.RuntimeOptionsResponse, error) {
	return &pulumirpc.RuntimeOptionsResponse{}, nil
}

func (h *host) GetProgramDependencies(
	context.Context, *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	return &pulumirpc.GetProgramDependenciesResponse{}, nil
}

// About reports the interpreter the program would run with (`pulumi about`).
func (h *host) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	py, err := h.findPython(req.GetInfo())
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, py.exe, "--version")
	cmd.Env = py.environ(os.Environ())
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("running %s --version: %w", py.exe, err)
	}
	return &pulumirpc.AboutResponse{
		Executable: py.exe,
		Version:    strings.TrimPrefix(strings.TrimSpace(string(out)), "Python "),
	}, nil
}

// Run executes the program through pulumi-language-python-exec, which turns
// its flags into pulumi.runtime settings. Failures of the program itself are
// reported in the response, not as RPC errors, so that the engine shows them
// as program errors.
func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	info := req.GetInfo()
	py, err := h.findPython(info)
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}

	// ProgramInfo supersedes the deprecated Program field.
	program := req.GetProgram() //nolint:staticcheck
	if info != nil {
		program = filepath.Join(info.GetProgramDirectory(), info.GetEntryPoint())
	}

	h.mu.Lock()
	engine, root := h.engine, h.root
	h.mu.Unlock()
	if info.GetRootDirectory() != "" {
		root = info.GetRootDirectory()
	}

	args := []string{"-u", h.execScript,
		"--monitor", req.GetMonitorAddress(),
		"--project", req.GetProject(),
		"--stack", req.GetStack(),
		"--pwd", req.GetPwd(),
		"--dry_run", strconv.FormatBool(req.GetDryRun()),
		"--parallel", strconv.Itoa(int(req.GetParallel())),
	}
	// Only pass optional settings that are set, so the SDK keeps its
	// defaults (None) instead of seeing empty strings.
	for _, opt := range [][2]string{
		{"--engine", engine},
		{"--organization", req.GetOrganization()},
		{"--root_directory", root},
		{"--tracing", h.tracing},
	} {
		if opt[1] != "" {
			args = append(args, opt[0], opt[1])
		}
	}
	args = append(args, program)
	args = append(args, req.GetArgs()...)

	env, err := programEnv(py, req)
	if err != nil {
		return nil, err
	}

	// Kill the program when the engine cancels the call or goes away, or
	// when this host shuts down.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(h.ctx, cancel)()

	cmd := exec.CommandContext(ctx, py.exe, args...)
	cmd.Dir = req.GetPwd()
	cmd.Env = env
	// Hand over our own descriptors rather than pipes: output reaches the
	// engine unbuffered and nothing is left to drain after the program ends.
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	h.logf("running %s %s", py.exe, strings.Join(args, " "))

	err = cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return &pulumirpc.RunResponse{}, nil
	case ctx.Err() != nil:
		return nil, fmt.Errorf("program cancelled: %w", ctx.Err())
	case errors.As(err, &exitErr) && exitErr.ExitCode() == bailExitCode:
		return &pulumirpc.RunResponse{Bail: true}, nil
	case errors.As(err, &exitErr) && exitErr.ExitCode() >= 0:
		return &pulumirpc.RunResponse{
			Error: fmt.Sprintf("Program exited with non-zero exit code: %d", exitErr.ExitCode()),
		}, nil
	default:
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("running %s: %v", py.exe, err)}, nil
	}
}

// programEnv is the environment of a program run: the interpreter's, plus
// the stack configuration, which the Python SDK reads from PULUMI_CONFIG
// (JSON object) and PULUMI_CONFIG_SECRET_KEYS (JSON array), plus the stack
// identity some SDK entry points (policy packs) read from the environment.
func programEnv(py python, req *pulumirpc.RunRequest) ([]string, error) {
	config := req.GetConfig()
	if config == nil {
		config = map[string]string{} // must encode as {}, not null
	}
	configJSON, err := json.Marshal(config)
	if err != nil {
		return nil, err
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	secretJSON, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, err
	}

	env := py.environ(os.Environ())
	env = setEnv(env, "PULUMI_CONFIG", string(configJSON))
	env = setEnv(env, "PULUMI_CONFIG_SECRET_KEYS", string(secretJSON))
	env = setEnv(env, "PULUMI_PROJECT", req.GetProject())
	env = setEnv(env, "PULUMI_STACK", req.GetStack())
	env = setEnv(env, "PULUMI_DRY_RUN", strconv.FormatBool(req.GetDryRun()))
	if org := req.GetOrganization(); org != "" {
		env = setEnv(env, "PULUMI_ORGANIZATION", org)
	}
	return env, nil
}

// python is the interpreter chosen for a program, and the virtual
// environment it belongs to, if any.
type python struct {
	exe  string
	venv string
}

// findPython applies the same precedence as upstream Pulumi: the
// `virtualenv` runtime option from Pulumi.yaml (relative paths are relative
// to the project root), else $PULUMI_PYTHON_CMD, else python3 on PATH.
func (h *host) findPython(info *pulumirpc.ProgramInfo) (python, error) {
	if venv := info.GetOptions().GetFields()["virtualenv"].GetStringValue(); venv != "" {
		if !filepath.IsAbs(venv) {
			root := info.GetRootDirectory()
			if root == "" {
				h.mu.Lock()
				root = h.root
				h.mu.Unlock()
			}
			venv = filepath.Join(root, venv)
		}
		exe := filepath.Join(venv, "bin", "python")
		if _, err := os.Stat(exe); err != nil {
			return python{}, fmt.Errorf(
				"the 'virtualenv' option in Pulumi.yaml is %q, but %s does not exist; "+
					"create it with `python3 -m venv %s` and install the pulumi package into it",
				venv, exe, venv)
		}
		return python{exe: exe, venv: venv}, nil
	}

	name := os.Getenv("PULUMI_PYTHON_CMD")
	if name == "" {
		name = "python3"
	}
	exe, err := exec.LookPath(name)
	if err != nil {
		return python{}, fmt.Errorf("finding the Python interpreter %q: %w", name, err)
	}
	return python{exe: exe}, nil
}

// environ activates the virtual environment the way its activate script
// would, so that tools the program spawns (pip, python) resolve to the venv.
func (py python) environ(env []string) []string {
	if py.venv == "" {
		return env
	}
	path := filepath.Join(py.venv, "bin")
	if old := getEnv(env, "PATH"); old != "" {
		path += string(os.PathListSeparator) + old
	}
	env = setEnv(env, "PATH", path)
	env = setEnv(env, "VIRTUAL_ENV", py.venv)
	return unsetEnv(env, "PYTHONHOME")
}

func getEnv(env []string, key string) string {
	value := ""
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			value = v // later entries win, as in exec.Cmd
		}
	}
	return value
}

func unsetEnv(env []string, key string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k != key {
			out = append(out, kv)
		}
	}
	return out
}

func setEnv(env []string, key, value string) []string {
	return append(unsetEnv(env, key), key+"="+value)
}
