package sandbox_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
	"github.com/opensandbox/opensandbox/services/worker/runtime"
	"github.com/opensandbox/opensandbox/services/worker/sandbox"
	"github.com/opensandbox/opensandbox/services/worker/sandboxtest"
)

// Attack tests of docs/security.md (user namespaces, seccomp profile, disk
// quotas). Each states the attack and, where it makes sense, a control that
// shows the attack would succeed without the defence.

// sh runs a shell command in a sandbox and returns its stdout and stderr.
func sh(t *testing.T, m *sandbox.Manager, id, cmd string) string {
	t.Helper()
	res, err := m.Exec(context.Background(), id, api.ProcessConfig{Cmd: cmd, Timeout: 60})
	if err != nil {
		t.Fatalf("exec %q: %v", cmd, err)
	}
	return res.Stdout + res.Stderr
}

// rawContainer starts a container of image with the same runtime but none
// of the sandbox controls (Podman's defaults: no user namespace, Podman's
// seccomp profile), for controls; it runs sleep and is removed at cleanup.
func rawContainer(t *testing.T, image string, userns bool) string {
	t.Helper()
	name := "osb-test-raw-" + sandboxtest.RandomID()
	args := []string{"run", "-d", "--name", name, "--cap-drop", "all", "--cap-add", "SETUID,SETGID,CHOWN,DAC_OVERRIDE,FOWNER,KILL", "--network", "none"}
	if userns {
		args = append(args, "--userns=auto:size=65536")
	}
	args = append(args, image, "sleep", "600")
	if out, err := exec.Command("podman", args...).CombinedOutput(); err != nil {
		t.Fatalf("podman run: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("podman", "rm", "-f", "-t", "0", name).Run() })
	return name
}

func rawExec(t *testing.T, name, cmd string) string {
	t.Helper()
	out, _ := exec.Command("podman", "exec", name, "sh", "-c", cmd).CombinedOutput()
	return string(out)
}

// Root in a sandbox is an unprivileged host uid of a range of its own.
func TestSandboxRootIsAnUnprivilegedHostUID(t *testing.T) {
	m, _, cfg := newManager(t)
	a := mustCreate(t, m, api.SandboxConfig{})
	b := mustCreate(t, m, api.SandboxConfig{})
	base := func(id string) int {
		out := sh(t, m, id, "cat /proc/self/uid_map")
		f := strings.Fields(out)
		if len(f) != 3 || f[0] != "0" || f[2] != strconv.Itoa(runtime.UserNSSize) {
			t.Fatalf("uid_map of %s is %q, want one range of %d ids for root", id, out, runtime.UserNSSize)
		}
		host, _ := strconv.Atoi(f[1])
		if host == 0 {
			t.Fatalf("sandbox root is host root: uid_map %q", out)
		}
		return host
	}
	ua, ub := base(a.SandboxID), base(b.SandboxID)
	if ua == ub || (ua < ub && ua+runtime.UserNSSize > ub) || (ub < ua && ub+runtime.UserNSSize > ua) {
		t.Fatalf("sandboxes share host ids: %d and %d", ua, ub)
	}
	// What the sandbox's root creates in its run directory (the host side
	// of /.osb/run) belongs to that uid on the host, and the worker still
	// reads it.
	sh(t, m, a.SandboxID, "echo hi > /.osb/run/made-inside")
	p := filepath.Join(cfg.DataDir, "sandboxes", a.SandboxID, "run", "made-inside")
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil || int(st.Uid) != ua {
		t.Fatalf("file made inside: owner %d (%v), want host uid %d", st.Uid, err, ua)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "hi\n" {
		t.Fatalf("worker reads %q, %v", b, err)
	}
	// Control: a container without a user namespace maps root to root.
	raw := rawContainer(t, "localhost/opensandbox/busybox:latest", false)
	if out := rawExec(t, raw, "cat /proc/self/uid_map"); len(strings.Fields(out)) < 2 || strings.Fields(out)[1] != "0" {
		t.Fatalf("control: uid_map without a user namespace is %q, want the identity map", out)
	}
}

const inotifyHog = `python3 -c '
import ctypes, time
libc = ctypes.CDLL(None, use_errno=True)
fds = []
for i in range(%d):
    fd = libc.inotify_init1(0)
    if fd < 0:
        print("failed at", i, "errno", ctypes.get_errno(), flush=True)
        break
    fds.append(fd)
print("held", len(fds), flush=True)
time.sleep(%d)
'`

// 300 inotify instances held in one sandbox stop at its own cap and leave
// the host's and another sandbox's working.
func TestInotifyInOneSandboxLeavesHostAndOthersWorking(t *testing.T) {
	m, _, _ := newManager(t)
	ctx := context.Background()
	a := mustCreate(t, m, api.SandboxConfig{TemplateID: "base"})
	b := mustCreate(t, m, api.SandboxConfig{TemplateID: "base"})
	st, err := m.StartProcess(ctx, a.SandboxID, api.ProcessConfig{Cmd: fmt.Sprintf(inotifyHog, 300, 120)})
	if err != nil {
		t.Fatal(err)
	}
	waitOutput(t, m, a.SandboxID, st.PID, "held")
	held := sh(t, m, a.SandboxID, "ls -l /proc/[0-9]*/fd 2>/dev/null | grep -c inotify")
	n, _ := strconv.Atoi(strings.TrimSpace(held))
	// The attack ran at full strength: the sandbox holds its whole cap.
	if n != runtime.SandboxInotifyInstances {
		t.Fatalf("sandbox holds %d inotify instances, want its cap %d", n, runtime.SandboxInotifyInstances)
	}
	// The host's root still gets instances.
	for i := 0; i < 8; i++ {
		fd, err := syscall.InotifyInit1(0)
		if err != nil {
			t.Fatalf("host inotify_init1 while a sandbox holds %d: %v", n, err)
		}
		defer syscall.Close(fd)
	}
	// So does another sandbox.
	if out := sh(t, m, b.SandboxID, fmt.Sprintf(inotifyHog, 20, 0)); !strings.Contains(out, "held 20") {
		t.Fatalf("other sandbox: %q", out)
	}
}

// probe tries system calls by number (x86_64) and prints name=result.
const probe = `python3 - <<'EOF'
import ctypes, os, errno
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(name, nr, *args):
    r = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
    if r == 0 and name.startswith("clone"):
        os._exit(0)  # a child, had the call been allowed
    e = ctypes.get_errno() if r < 0 else 0
    print(name + "=" + (errno.errorcode.get(e, str(e)) if r < 0 else "ok"), flush=True)
sc("keyctl", 250, 0, -1, 0, 0, 0)
sc("add_key", 248, 0, 0, 0, 0, 0)
sc("request_key", 249, 0, 0, 0, 0)
sc("bpf", 321, 0, 0, 0)
sc("perf_event_open", 298, 0, 0, -1, -1, 0)
sc("userfaultfd", 323, 0)
sc("ptrace_attach_1", 101, 16, 1, 0, 0)
sc("kexec_load", 246, 0, 0, 0, 0)
sc("init_module", 175, 0, 0, 0)
sc("finit_module", 313, -1, 0, 0)
sc("delete_module", 176, 0, 0)
sc("setns", 308, -1, 0)
sc("unshare_user", 272, 0x10000000)
sc("clone_newuser", 56, 0x10000000 | 17, 0, 0, 0, 0)
sc("clone_newns", 56, 0x20000 | 17, 0, 0, 0, 0)
sc("clone3", 435, 0, 0)
sc("mount", 165, 0, 0, 0, 0, 0)
sc("umount2", 166, 0, 0)
sc("open_tree", 428, -100, 0, 0)
sc("fsopen", 430, 0, 0)
sc("io_uring_setup", 425, 1, 0)
sc("kill_1_term", 62, 1, 15)
sc("kill_1_term_high_bits", 62, (1 << 32) | 1, 15)
sc("tgkill_1_term", 234, 1, 1, 15)
sc("rt_sigqueueinfo_1", 129, 1, 15, 0)
sc("tkill", 200, 1, 15)
sc("pidfd_send_signal", 424, 0, 15, 0, 0)
sc("setpgid_to_1", 109, 0, 1)
sc("fork_plain", 57)
EOF`

// The sandbox's seccomp profile denies new namespaces, mounts, keyrings,
// bpf, perf, userfaultfd, io_uring, ptrace, kernel loading and signals to
// the agent; ordinary tools keep working.
func TestSeccompProfileDeniesKernelSurfaces(t *testing.T) {
	m, _, _ := newManager(t)
	sb := mustCreate(t, m, api.SandboxConfig{TemplateID: "base"})
	out := sh(t, m, sb.SandboxID, probe)
	results := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			results[k] = v
		}
	}
	for name, want := range map[string]string{
		"keyctl": "EPERM", "add_key": "EPERM", "request_key": "EPERM", "bpf": "EPERM", "perf_event_open": "EPERM",
		"userfaultfd": "EPERM", "ptrace_attach_1": "EPERM", "kexec_load": "EPERM", "init_module": "EPERM",
		"finit_module": "EPERM", "delete_module": "EPERM", "setns": "EPERM", "unshare_user": "EPERM",
		"clone_newuser": "EPERM", "clone_newns": "EPERM", "clone3": "ENOSYS", "mount": "EPERM", "umount2": "EPERM",
		"open_tree": "EPERM", "fsopen": "EPERM", "io_uring_setup": "ENOSYS", "kill_1_term": "EPERM",
		"kill_1_term_high_bits": "EPERM", "tgkill_1_term": "EPERM", "rt_sigqueueinfo_1": "EPERM", "tkill": "ENOSYS",
		"pidfd_send_signal": "ENOSYS", "setpgid_to_1": "EPERM",
	} {
		if results[name] != want {
			t.Errorf("%s: got %q, want %s (probe output:\n%s)", name, results[name], want, out)
		}
	}
	if results["fork_plain"] != "ok" {
		t.Errorf("a plain fork must work: %q", results["fork_plain"])
	}
	// The tools themselves.
	for cmd, want := range map[string]string{
		"unshare -U true; echo rc=$?":                          "rc=1",
		"unshare -m true; echo rc=$?":                          "rc=1",
		"unshare -n true; echo rc=$?":                          "rc=1",
		"mkdir -p /mnt/x; mount -t tmpfs x /mnt/x; echo rc=$?": "rc=32",
	} {
		if got := sh(t, m, sb.SandboxID, cmd); !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %s", cmd, got, want)
		}
	}
	// What the base template's tools need still works: threads (clone
	// without namespace flags, after clone3's ENOSYS), git, python, apt.
	got := sh(t, m, sb.SandboxID, `set -e
python3 -c 'import threading; t = threading.Thread(target=print, args=("thread-ok",)); t.start(); t.join()'
cd /tmp && git init -q r && cd r && git -c user.email=a@b -c user.name=a commit -q --allow-empty -m x && git log --oneline | wc -l
apt-get --version | head -1
curl --version | head -1 | cut -d' ' -f1
ps -e >/dev/null && echo ps-ok
bash -c 'sleep 0.1 & wait; echo bg-ok'`)
	for _, want := range []string{"thread-ok", "\n1\n", "apt ", "curl", "ps-ok", "bg-ok"} {
		if !strings.Contains(got, want) {
			t.Errorf("tools: %q lacks %q", got, want)
		}
	}
	// Control: under Podman's default profile in a user namespace (the
	// setup without our profile), unshare -U succeeds.
	raw := rawContainer(t, "localhost/opensandbox/base:latest", true)
	if out := rawExec(t, raw, "unshare -U true; echo rc=$?"); !strings.Contains(out, "rc=0") {
		t.Errorf("control: unshare -U under Podman's default profile: %q, want rc=0", out)
	}
}

// Signals from inside do not end the sandbox: SIGKILL to PID 1 is dropped
// by the kernel, the others by the seccomp profile.
func TestSignalsToTheAgentFromInsideDoNotEndTheSandbox(t *testing.T) {
	m, rt, _ := newManager(t)
	ctx := context.Background()
	sb := mustCreate(t, m, api.SandboxConfig{})
	before, err := rt.Inspect(ctx, "osb-"+sb.SandboxID)
	if err != nil {
		t.Fatal(err)
	}
	out := sh(t, m, sb.SandboxID, "for s in KILL TERM INT HUP QUIT USR1 USR2; do kill -$s 1; echo $s=$?; done")
	if !strings.Contains(out, "KILL=0") { // accepted, and dropped by the kernel
		t.Logf("kill -KILL 1: %q", out)
	}
	if !strings.Contains(out, "TERM=1") || !strings.Contains(out, "INT=1") {
		t.Fatalf("signals to PID 1 from inside were accepted: %q", out)
	}
	time.Sleep(500 * time.Millisecond) // an agent shutting down takes longer than this to go
	if got := sh(t, m, sb.SandboxID, "echo alive"); got != "alive\n" {
		t.Fatalf("after signals to the agent: %q", got)
	}
	after, err := rt.Inspect(ctx, "osb-"+sb.SandboxID)
	if err != nil || !after.Running || after.PID != before.PID {
		t.Fatalf("agent changed or stopped: before pid %d, after %+v %v", before.PID, after, err)
	}
	// The control, a SIGTERM from outside (podman stop) that does end the
	// sandbox, is TestAgentForwardsSIGTERMAndExits.
}

// dfBytes parses `df -k PATH` (busybox and coreutils) into size and used.
func dfBytes(t *testing.T, out string) (size, used int64) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) < 3 {
		t.Fatalf("df output %q", out)
	}
	s, _ := strconv.ParseInt(f[1], 10, 64)
	u, _ := strconv.ParseInt(f[2], 10, 64)
	return s << 10, u << 10
}

var noSpace = regexp.MustCompile(`No space left on device`)

// With diskMB 64, writing 100 MB fails with ENOSPC in the root file system,
// /tmp and every writable mount; another sandbox and the host still write.
func TestDiskLimitStopsWritesInsideOnly(t *testing.T) {
	m, _, cfg := newManager(t)
	small := mustCreate(t, m, api.SandboxConfig{DiskMB: 64})
	other := mustCreate(t, m, api.SandboxConfig{})
	if small.DiskMB != 64 || other.DiskMB != cfg.DefaultDiskMB {
		t.Fatalf("diskMB: %d and %d, want 64 and %d", small.DiskMB, other.DiskMB, cfg.DefaultDiskMB)
	}
	size, _ := dfBytes(t, sh(t, m, small.SandboxID, "df -k /"))
	if size > 64<<20 || size < 48<<20 {
		t.Fatalf("df / in a 64 MiB sandbox shows %d bytes", size)
	}
	for _, dir := range []string{"/root", "/tmp", "/.osb/run", "/dev/shm"} {
		out := sh(t, m, small.SandboxID, fmt.Sprintf("dd if=/dev/zero of=%s/fill bs=1M count=100 2>&1; echo rc=$?; rm -f %s/fill", dir, dir))
		if !noSpace.MatchString(out) || strings.Contains(out, "rc=0") {
			t.Errorf("dd of 100 MB into %s: %q, want ENOSPC", dir, out)
		}
	}
	// The full sandbox works again once it frees space.
	if out := sh(t, m, small.SandboxID, "dd if=/dev/zero of=/root/f bs=1M count=10 2>&1; echo rc=$?"); !strings.Contains(out, "rc=0") {
		t.Errorf("10 MB after freeing space: %q", out)
	}
	// Control: the same 100 MB write succeeds in a sandbox with the default
	// limit, which df shows.
	if out := sh(t, m, other.SandboxID, "dd if=/dev/zero of=/root/fill bs=1M count=100 2>&1; echo rc=$?"); !strings.Contains(out, "rc=0") {
		t.Errorf("control: 100 MB in a default sandbox: %q", out)
	}
	if size, _ := dfBytes(t, sh(t, m, other.SandboxID, "df -k /")); size < int64(cfg.DefaultDiskMB)<<20*9/10 || size > int64(cfg.DefaultDiskMB)<<20 {
		t.Errorf("df / in a default sandbox shows %d bytes, want about %d MiB", size, cfg.DefaultDiskMB)
	}
	// The host still writes.
	if err := os.WriteFile(filepath.Join(t.TempDir(), "host"), make([]byte, 10<<20), 0o600); err != nil {
		t.Errorf("host write: %v", err)
	}
}

// mountsUnder lists the mount points at or below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			out = append(out, f[4])
		}
	}
	return out
}

// A sandbox's disk and run directory are unmounted and deleted when it is
// destroyed, and after a worker crash when its container died meanwhile.
func TestDiskIsReleasedOnDestroyAndAfterACrash(t *testing.T) {
	rt := sandboxtest.Runtime(t)
	cfg := sandboxtest.Config(t)
	m := sandboxtest.Manager(t, rt, cfg)
	ctx := context.Background()
	sb := mustCreate(t, m, api.SandboxConfig{DiskMB: 64})
	dir := filepath.Join(cfg.DataDir, "sandboxes", sb.SandboxID)
	if len(mountsUnder(t, dir)) < 2 {
		t.Fatalf("a live sandbox has no disk and run mounts: %v", mountsUnder(t, dir))
	}
	if err := m.Kill(ctx, sb.SandboxID); err != nil {
		t.Fatal(err)
	}
	if left := mountsUnder(t, dir); len(left) > 0 {
		t.Fatalf("mounts left after destroy: %v", left)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("sandbox directory left: %v", err)
	}

	// A crash: the worker goes away, the container dies meanwhile, a new
	// worker starts on the same data directory.
	sb = mustCreate(t, m, api.SandboxConfig{DiskMB: 64})
	dir = filepath.Join(cfg.DataDir, "sandboxes", sb.SandboxID)
	m.Close()
	if out, err := exec.Command("podman", "rm", "-f", "-t", "0", "osb-"+sb.SandboxID).CombinedOutput(); err != nil {
		t.Fatalf("podman rm: %v %s", err, out)
	}
	sandboxtest.Manager(t, rt, cfg) // restores: the sandbox is lost and released
	if left := mountsUnder(t, dir); len(left) > 0 {
		t.Fatalf("mounts left after restore: %v", left)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("sandbox directory left after restore: %v", err)
	}
}
