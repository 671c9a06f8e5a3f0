package bench

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/pgtest"
)

// row is one line of the table printed after the benchmarks.
type row struct {
	name     string
	ours     []time.Duration
	baseline []time.Duration
	baseName string
	note     string
}

var (
	tableMu sync.Mutex
	table   []row
)

func addRow(b *testing.B, r row) {
	op50, op99 := pct(r.ours, 50), pct(r.ours, 99)
	b.ReportMetric(ms(op50), "p50-ms")
	b.ReportMetric(ms(op99), "p99-ms")
	if len(r.baseline) > 0 {
		b.ReportMetric(ms(pct(r.baseline, 50)), "podman-p50-ms")
		b.ReportMetric(ms(op50)/ms(pct(r.baseline, 50)), "ratio-p50")
	}
	tableMu.Lock()
	table = append(table, r)
	tableMu.Unlock()
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	printTable()
	os.Exit(code)
}

func printTable() {
	if len(table) == 0 {
		return
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%-34s %6s %10s %10s   %-30s %10s %10s %8s\n", "operation", "n", "p50 ms", "p99 ms", "raw podman (same run)", "p50 ms", "p99 ms", "ratio")
	fmt.Fprintln(&sb, strings.Repeat("-", 128))
	for _, r := range table {
		fmt.Fprintf(&sb, "%-34s %6d %10.2f %10.2f", r.name, len(r.ours), ms(pct(r.ours, 50)), ms(pct(r.ours, 99)))
		if len(r.baseline) > 0 {
			ratio := ms(pct(r.ours, 50)) / ms(pct(r.baseline, 50))
			fmt.Fprintf(&sb, "   %-30s %10.2f %10.2f %7.3fx", r.baseName, ms(pct(r.baseline, 50)), ms(pct(r.baseline, 99)), ratio)
		}
		if r.note != "" {
			fmt.Fprintf(&sb, "   %s", r.note)
		}
		sb.WriteString("\n")
	}
	fmt.Print(sb.String())
}
