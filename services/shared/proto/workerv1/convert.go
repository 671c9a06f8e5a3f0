package workerv1

import (
	"github.com/opensandbox/opensandbox/services/shared/api"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// This file is written by hand: conversions between the messages and the
// REST shapes, used by both ends of the connection.

// SandboxToProto converts a sandbox to its message.
func SandboxToProto(sb api.Sandbox, orgID string) *Sandbox {
	return &Sandbox{
		SandboxId: sb.SandboxID, TemplateId: sb.TemplateID, Alias: sb.Alias, Status: sb.Status,
		StartedAt: timestamppb.New(sb.StartedAt), EndAt: timestamppb.New(sb.EndAt),
		Metadata: sb.Metadata, CpuCount: int32(sb.CPUCount), MemoryMb: int32(sb.MemoryMB),
		DiskMb: int32(sb.DiskMB), NetworkEnabled: sb.NetworkEnabled, WorkerId: sb.WorkerID, Region: sb.Region, OrgId: orgID,
	}
}

// SandboxFromProto converts a sandbox message to the REST shape.
func SandboxFromProto(p *Sandbox) api.Sandbox {
	return api.Sandbox{
		SandboxID: p.GetSandboxId(), TemplateID: p.GetTemplateId(), Alias: p.GetAlias(), Status: p.GetStatus(),
		StartedAt: p.GetStartedAt().AsTime(), EndAt: p.GetEndAt().AsTime(), Metadata: p.GetMetadata(),
		CPUCount: int(p.GetCpuCount()), MemoryMB: int(p.GetMemoryMb()), DiskMB: int(p.GetDiskMb()),
		NetworkEnabled: p.GetNetworkEnabled(), WorkerID: p.GetWorkerId(), Region: p.GetRegion(),
	}
}

// ConfigToProto converts a create request body to its message.
func ConfigToProto(c api.SandboxConfig) *SandboxConfig {
	return &SandboxConfig{
		Template: c.TemplateName(), Alias: c.Alias, Metadata: c.Metadata, TimeoutSeconds: int64(c.Timeout),
		CpuCount: int32(c.CPUCount), MemoryMb: int32(c.MemoryMB), DiskMb: int32(c.DiskMB), Envs: c.Envs, NetworkEnabled: c.NetworkEnabled,
	}
}

// ConfigFromProto converts a create message to the REST body.
func ConfigFromProto(c *SandboxConfig) api.SandboxConfig {
	return api.SandboxConfig{
		TemplateID: c.GetTemplate(), Alias: c.GetAlias(), Metadata: c.GetMetadata(), Timeout: int(c.GetTimeoutSeconds()),
		CPUCount: int(c.GetCpuCount()), MemoryMB: int(c.GetMemoryMb()), DiskMB: int(c.GetDiskMb()), Envs: c.GetEnvs(), NetworkEnabled: c.GetNetworkEnabled(),
	}
}

// EntryToProto converts a file entry to its message.
func EntryToProto(e api.EntryInfo) *EntryInfo {
	return &EntryInfo{
		Name: e.Name, Path: e.Path, IsDir: e.IsDir, Size: e.Size, Mode: e.Mode,
		ModTime: timestamppb.New(e.ModTime), SymlinkTarget: e.SymlinkTarget,
	}
}

// EntryFromProto converts a file entry message to the REST shape.
func EntryFromProto(e *EntryInfo) api.EntryInfo {
	return api.EntryInfo{
		Name: e.GetName(), Path: e.GetPath(), IsDir: e.GetIsDir(), Size: e.GetSize(), Mode: e.GetMode(),
		ModTime: e.GetModTime().AsTime(), SymlinkTarget: e.GetSymlinkTarget(),
	}
}
