package runtime

import _ "embed"

// SeccompProfile is OpenSandbox's seccomp profile for every sandbox
// (seccomp.json; docs/security.md says what it denies and why). The worker
// writes it to its data directory and passes the path in Spec.
//
//go:embed seccomp.json
var SeccompProfile []byte
