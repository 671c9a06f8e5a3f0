package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"

	"github.com/opensandbox/opensandbox/services/shared/config"
)

// ConfigFromEnv returns DefaultConfig overridden by OPENSANDBOX_* variables.
func ConfigFromEnv(e *config.Env) Config {
	c := DefaultConfig()
	c.Region = e.String("OPENSANDBOX_REGION", c.Region)
	c.DataDir = e.String("OPENSANDBOX_DATA_DIR", c.DataDir)
	c.WorkerID = e.String("OPENSANDBOX_WORKER_ID", localWorkerID(c.DataDir))
	c.AgentBinary = e.String("OPENSANDBOX_AGENT_BINARY", "bin/osb-agent")
	c.DefaultTemplate = e.String("OPENSANDBOX_DEFAULT_TEMPLATE", c.DefaultTemplate)
	c.Templates["base"] = e.String("OPENSANDBOX_IMAGE_BASE", c.Templates["base"])
	c.Templates["busybox"] = e.String("OPENSANDBOX_IMAGE_BUSYBOX", c.Templates["busybox"])
	c.DefaultTimeout = e.Duration("OPENSANDBOX_DEFAULT_TIMEOUT", c.DefaultTimeout)
	c.MaxTimeout = e.Duration("OPENSANDBOX_MAX_TIMEOUT", c.MaxTimeout)
	c.MaxCPUs = e.Int("OPENSANDBOX_MAX_CPUS", c.MaxCPUs)
	c.MaxMemMB = e.Int("OPENSANDBOX_MAX_MEMORY_MB", c.MaxMemMB)
	c.DefaultDiskMB = e.Int("OPENSANDBOX_DEFAULT_DISK_MB", c.DefaultDiskMB)
	c.MaxDiskMB = e.Int("OPENSANDBOX_MAX_DISK_MB", c.MaxDiskMB)
	c.PidsLimit = e.Int64("OPENSANDBOX_PIDS_LIMIT", c.PidsLimit)
	c.Capacity = e.Int("OPENSANDBOX_CAPACITY", c.Capacity)
	c.PullRegistries = e.List("OPENSANDBOX_PULL_REGISTRIES")
	c.InsecureRegistries = e.List("OPENSANDBOX_INSECURE_REGISTRIES")
	c.PublicImages = e.List("OPENSANDBOX_PUBLIC_IMAGES")
	c.PullMaxBytes = e.Int64("OPENSANDBOX_PULL_MAX_BYTES", c.PullMaxBytes)
	c.PullTimeout = e.Duration("OPENSANDBOX_PULL_TIMEOUT", c.PullTimeout)
	c.ImageGCAfter = e.Duration("OPENSANDBOX_IMAGE_GC_AFTER", c.ImageGCAfter)
	c.MaxExecs = e.Int("OPENSANDBOX_MAX_EXECS", c.MaxExecs)
	c.MaxOutput = e.Int("OPENSANDBOX_MAX_OUTPUT", c.MaxOutput)
	c.MaxSandboxStreams = e.Int("OPENSANDBOX_MAX_SANDBOX_STREAMS", c.MaxSandboxStreams)
	c.MaxStreams = e.Int("OPENSANDBOX_MAX_STREAMS", c.MaxStreams)
	c.ReconcileInterval = e.Duration("OPENSANDBOX_RECONCILE_INTERVAL", c.ReconcileInterval)
	return c
}

// localWorkerID names a combined server's worker after its data directory:
// two checkouts sharing one Podman each restore only their own sandboxes.
func localWorkerID(dataDir string) string {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		abs = dataDir
	}
	sum := sha256.Sum256([]byte(abs))
	return "local-" + hex.EncodeToString(sum[:4])
}
