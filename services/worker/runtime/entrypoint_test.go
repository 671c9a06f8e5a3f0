package runtime_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

// An image with its own ENTRYPOINT still runs our agent as PID 1.
func TestImageEntrypointIsReplacedByTheAgent(t *testing.T) {
	ref := "localhost/osbtest/entrypoint:" + sandboxtest.RandomID()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Containerfile"), []byte("FROM localhost/opensandbox/busybox:latest\nENTRYPOINT [\"/bin/false\"]\nCMD [\"ignored\"]\n"), 0o644)
	if out, err := exec.Command("podman", "build", "-q", "-t", ref, dir).CombinedOutput(); err != nil {
		t.Fatalf("podman build: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("podman", "rmi", "-f", ref).Run() })

	cfg := sandboxtest.Config(t)
	cfg.Templates["entrypoint"] = ref // an operator's template: no pull involved
	m := sandboxtest.Manager(t, sandboxtest.Runtime(t), cfg)
	sb, err := m.Create(context.Background(), api.SandboxConfig{TemplateID: "entrypoint"}, sandbox.CreateOptions{})
	if err != nil {
		t.Fatalf("create from an image with an ENTRYPOINT: %v", err)
	}
	res, err := m.Exec(context.Background(), sb.SandboxID, api.ProcessConfig{Cmd: "cat /proc/1/cmdline | tr '\\0' ' '"})
	if err != nil || !strings.HasPrefix(res.Stdout, "/.osb/agent") {
		t.Fatalf("PID 1 is %q (%v), want the agent", res.Stdout, err)
	}
}

// The writable per-sandbox socket directory cannot carry executables or devices.
func TestRunDirectoryIsNoexec(t *testing.T) {
	m := sandboxtest.Manager(t, sandboxtest.Runtime(t), sandboxtest.Config(t))
	sb, err := m.Create(context.Background(), api.SandboxConfig{}, sandbox.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Exec(context.Background(), sb.SandboxID, api.ProcessConfig{Cmd: "cp /bin/busybox /.osb/run/x && /.osb/run/x true; echo rc=$?; grep ' /.osb/run ' /proc/mounts"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(res.Stdout, "rc=0") || !strings.Contains(res.Stdout, "noexec") || !strings.Contains(res.Stdout, "nosuid") {
		t.Fatalf("run directory is executable or lacks nosuid: %q", res.Stdout)
	}
}
