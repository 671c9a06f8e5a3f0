package server

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
)

// memory reads the sandbox's memory cgroup as the sandbox sees it: its own
// cgroup mounted at /sys/fs/cgroup (v2) or /sys/fs/cgroup/memory (v1).
type memory struct {
	root string // "/sys/fs/cgroup", or a directory in tests
}

// limit returns the sandbox's memory limit in bytes, or 0 when none is set
// or it cannot be read.
func (m memory) limit() int64 {
	for _, f := range []string{"memory.max", "memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(m.root + "/" + f)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 { // "max", or v1's "no limit"
			return 0
		}
		return n
	}
	return 0
}

// oomKills returns how many processes the kernel's OOM killer has killed in
// the sandbox so far (-1 when it cannot tell).
func (m memory) oomKills() int64 {
	for _, f := range []string{"memory.events", "memory/memory.oom_control"} {
		b, err := os.ReadFile(m.root + "/" + f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "oom_kill "); ok {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					return n
				}
			}
		}
	}
	return -1
}
