package runtime

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/containers/podman/v5/libpod/define"
)

// UserNSSize is how many host ids each sandbox's user namespace maps: every
// id an image may use (nobody is 65534), from a range of its own.
const UserNSSize = 65536

// What one sandbox may take of the per-user inotify limits. The kernel
// charges a user namespace's use to its owner too, which is host root for
// every sandbox: without a cap of its own, one sandbox could use up host
// root's instances (fs.inotify.max_user_instances, 128 by default), as the
// worker and every other sandbox also draw on them. Hosts raise their own
// limits to capacity x these (scripts/bootstrap.sh, the Ansible role).
const (
	SandboxInotifyInstances = 128
	SandboxInotifyWatches   = 65536
)

// LimitUserNS sets the inotify limits of the user namespace of process pid
// (a sandbox's agent, before any other process of the sandbox runs). They
// are per-namespace sysctls that only a process in that namespace with
// CAP_SYS_RESOURCE may set, which sandboxes lack; a Go process cannot enter
// a user namespace, hence nsenter.
func LimitUserNS(ctx context.Context, pid int) error {
	if pid <= 0 {
		return errors.New("limit the sandbox's user namespace: no pid")
	}
	script := fmt.Sprintf("echo %d >/proc/sys/user/max_inotify_instances && echo %d >/proc/sys/user/max_inotify_watches",
		SandboxInotifyInstances, SandboxInotifyWatches)
	// pid is a host pid (Podman's). A worker in a container of its own pid
	// namespace (Nomad's Podman driver) reaches it through the host's /proc
	// mounted at OPENSANDBOX_HOST_PROC.
	proc := cmp.Or(os.Getenv("OPENSANDBOX_HOST_PROC"), "/proc")
	out, err := exec.CommandContext(ctx, hostTool("nsenter"), "--user="+proc+"/"+strconv.Itoa(pid)+"/ns/user", "--", "/bin/sh", "-c", script).CombinedOutput()
	if err != nil {
		return fmt.Errorf("limit the sandbox's user namespace: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// HostLimitWarnings says which host limits are too low for capacity
// sandboxes each taking its inotify share, with the command that fixes it.
func HostLimitWarnings(capacity int) []string {
	var out []string
	for _, l := range []struct {
		sysctl string
		per    int
	}{{"fs.inotify.max_user_instances", SandboxInotifyInstances}, {"fs.inotify.max_user_watches", SandboxInotifyWatches}} {
		b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(l.sysctl, ".", "/"))
		if err != nil {
			continue
		}
		have, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if need := capacity * l.per; have < need {
			out = append(out, fmt.Sprintf("%s is %d, below %d sandboxes x %d: sandboxes can use up host root's share (sysctl -w %s=%d)",
				l.sysctl, have, capacity, l.per, l.sysctl, need))
		}
	}
	return out
}

// rootIDs returns the host uid and gid that root in the container maps to.
func rootIDs(hc *define.InspectContainerHostConfig) (uid, gid int, err error) {
	if hc == nil || hc.IDMappings == nil {
		return 0, 0, errors.New("the created container has no user namespace")
	}
	if uid, err = hostIDOfRoot(hc.IDMappings.UIDMap); err != nil {
		return 0, 0, err
	}
	if gid, err = hostIDOfRoot(hc.IDMappings.GIDMap); err != nil {
		return 0, 0, err
	}
	return uid, gid, nil
}

// hostIDOfRoot reads the host id of container id 0 from "container:host:size" entries.
func hostIDOfRoot(m []string) (int, error) {
	for _, e := range m {
		parts := strings.Split(e, ":")
		if len(parts) == 3 && parts[0] == "0" {
			return strconv.Atoi(parts[1])
		}
	}
	return 0, fmt.Errorf("no mapping for root in %v", m)
}
