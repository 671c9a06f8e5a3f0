//go:build integration

package opensandbox_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	opensandbox "github.com/opensandbox/opensandbox/sdks/go"
)

func TestSandboxLifecycle(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, time.Minute)
	client := opensandbox.NewClient()
	sbx, err := client.Create(ctx, opensandbox.CreateOptions{
		Template: "busybox", Timeout: 2 * time.Minute,
		Envs:     map[string]string{"GREETING": "hello from envs"},
		Metadata: map[string]string{"owner": "go-sdk-test"},
		CPUCount: 1, MemoryMB: 256, DiskMB: 128, NetworkEnabled: false, Region: "local",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killQuietly(t, sbx) })

	created := sbx.Cached()
	if created.SandboxID == "" || created.SandboxID != sbx.ID() || created.TemplateID != "busybox" ||
		created.Status != opensandbox.StatusRunning || created.Metadata["owner"] != "go-sdk-test" ||
		created.CPUCount != 1 || created.MemoryMB != 256 || created.DiskMB != 128 || created.NetworkEnabled {
		t.Fatalf("create answered %+v", created)
	}
	if life := created.EndAt.Sub(created.StartedAt); life < 110*time.Second || life > 130*time.Second {
		t.Fatalf("lifetime %s, want about 2m", life)
	}

	info, err := sbx.Info(ctx)
	if err != nil || info.SandboxID != sbx.ID() || info.Status != opensandbox.StatusRunning {
		t.Fatalf("info: %+v, %v", info, err)
	}
	list, err := client.List(ctx)
	if err != nil || !slices.ContainsFunc(list, func(s opensandbox.SandboxInfo) bool { return s.SandboxID == sbx.ID() }) {
		t.Fatalf("list does not hold %s: %v, %v", sbx.ID(), list, err)
	}
	again, err := client.Connect(ctx, sbx.ID())
	if err != nil || again.ID() != sbx.ID() || again.Cached().TemplateID != "busybox" {
		t.Fatalf("connect: %v", err)
	}
	if running, err := again.IsRunning(ctx); err != nil || !running {
		t.Fatalf("is running: %v, %v", running, err)
	}
	res, err := again.Commands().Run(ctx, "echo $GREETING", opensandbox.RunOptions{})
	if err != nil || res.Stdout != "hello from envs\n" {
		t.Fatalf("run through the connected handle: %+v, %v", res, err)
	}

	if err := sbx.SetTimeout(ctx, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	info, err = sbx.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(info.EndAt); left < 9*time.Minute || left > 11*time.Minute {
		t.Fatalf("after SetTimeout(10m) the sandbox ends in %s", left)
	}
	if err := sbx.SetTimeout(ctx, 0); !errors.Is(err, opensandbox.ErrInvalidArgument) {
		t.Fatalf("SetTimeout(0): %v, want ErrInvalidArgument", err)
	}

	if killed, err := sbx.Kill(ctx); err != nil || !killed {
		t.Fatalf("kill: %v, %v", killed, err)
	}
	if running, err := sbx.IsRunning(ctx); err != nil || running {
		t.Fatalf("is running after kill: %v, %v", running, err)
	}
	_, err = sbx.Info(ctx)
	if !errors.Is(err, opensandbox.ErrSandboxGone) || !errors.Is(err, opensandbox.ErrNotFound) {
		t.Fatalf("info after kill: %v, want ErrSandboxGone", err)
	}
	requireCode(t, err, 404, opensandbox.CodeSandboxNotFound)
	if killed, err := sbx.Kill(ctx); err != nil || killed {
		t.Fatalf("second kill: %v, %v; want false and no error", killed, err)
	}
	if _, err := sbx.Commands().Run(ctx, "true", opensandbox.RunOptions{}); !errors.Is(err, opensandbox.ErrSandboxGone) {
		t.Fatalf("run after kill: %v, want ErrSandboxGone", err)
	}
	if _, err := sbx.Files().Read(ctx, "/etc/hostname"); !errors.Is(err, opensandbox.ErrSandboxGone) {
		t.Fatalf("read after kill: %v, want ErrSandboxGone", err)
	}
	list, err = client.List(ctx)
	if err != nil || slices.ContainsFunc(list, func(s opensandbox.SandboxInfo) bool { return s.SandboxID == sbx.ID() }) {
		t.Fatalf("list after kill still holds %s: %v", sbx.ID(), err)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, time.Minute)
	client := opensandbox.NewClient()

	t.Run("not found", func(t *testing.T) {
		_, err := client.Connect(ctx, "no-such-sandbox")
		if !errors.Is(err, opensandbox.ErrNotFound) || !errors.Is(err, opensandbox.ErrSandboxGone) {
			t.Fatalf("connect to a missing sandbox: %v", err)
		}
		requireCode(t, err, 404, opensandbox.CodeSandboxNotFound)
	})
	t.Run("authentication", func(t *testing.T) {
		_, err := opensandbox.NewClient(opensandbox.WithAPIKey("wrong-key")).List(ctx)
		if !errors.Is(err, opensandbox.ErrAuthentication) {
			t.Fatalf("wrong key: %v", err)
		}
		requireCode(t, err, 403, opensandbox.CodeForbidden)
		_, err = opensandbox.NewClient(opensandbox.WithAPIKey("")).Create(ctx, opensandbox.CreateOptions{Template: "busybox"})
		if !errors.Is(err, opensandbox.ErrAuthentication) {
			t.Fatalf("no key: %v", err)
		}
		requireCode(t, err, 401, opensandbox.CodeUnauthenticated)
	})
	t.Run("invalid argument", func(t *testing.T) {
		_, err := client.Create(ctx, opensandbox.CreateOptions{Template: "busybox", CPUCount: 1000})
		if !errors.Is(err, opensandbox.ErrInvalidArgument) {
			t.Fatalf("1000 CPUs: %v", err)
		}
		requireCode(t, err, 400, opensandbox.CodeInvalidArgument)
		_, err = client.Create(ctx, opensandbox.CreateOptions{Template: "no-such-template"})
		if !errors.Is(err, opensandbox.ErrInvalidArgument) {
			t.Fatalf("unknown template: %v", err)
		}
		requireCode(t, err, 400, "template_not_found")
	})
	t.Run("unreachable server", func(t *testing.T) {
		_, err := opensandbox.NewClient(opensandbox.WithAPIURL("http://127.0.0.1:1")).List(ctx)
		requireCode(t, err, 0, opensandbox.CodeTransport)
	})
	t.Run("deadline", func(t *testing.T) {
		sbx := newSandbox(t, "busybox")
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := sbx.Commands().Run(short, "sleep 30", opensandbox.RunOptions{})
		if !errors.Is(err, opensandbox.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("run past the context's deadline: %v", err)
		}
	})
	// ErrTimeout of a command's own timeout: TestRun; ErrSandboxGone after
	// kill: TestSandboxLifecycle; ErrRateLimit (429, control plane quotas,
	// which the combined server has none of): TestRateLimitAnswer.
}
