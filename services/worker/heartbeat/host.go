package heartbeat

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"sync"
)

// hostStats samples host CPU (since the previous sample) and memory use from
// /proc; on a system without /proc both read 0.
type hostStats struct {
	mu                sync.Mutex
	lastIdle, lastAll uint64
}

func newHostStats() *hostStats {
	h := &hostStats{}
	h.lastIdle, h.lastAll, _ = readCPU()
	return h
}

func (h *hostStats) sample() (cpuPct, memPct float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if idle, all, ok := readCPU(); ok {
		if d := all - h.lastAll; all > h.lastAll {
			cpuPct = 100 * float64(d-(idle-h.lastIdle)) / float64(d)
		}
		h.lastIdle, h.lastAll = idle, all
	}
	return cpuPct, readMem()
}

// readCPU returns the idle and total jiffies of the "cpu" line of /proc/stat.
func readCPU() (idle, all uint64, ok bool) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0, false
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, false
	}
	for i, s := range fields[1:] {
		v, _ := strconv.ParseUint(s, 10, 64)
		all += v
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
	}
	return idle, all, true
}

// readMem returns the share of memory not available, from /proc/meminfo.
func readMem() float64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	var total, avail float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		n, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		switch k {
		case "MemTotal":
			total = n
		case "MemAvailable":
			avail = n
		}
	}
	if total == 0 {
		return 0
	}
	return 100 * (total - avail) / total
}
