package admin

import (
	"crypto/rand"
	"fmt"
	"io"

	"github.com/opensandbox/opensandbox/services/shared/natsx"
	"golang.org/x/crypto/bcrypt"
)

// natsCredentials prints the `nomad var put` commands that give a region's
// NATS one user per role: the NATS job gets bcrypt hashes only, each service
// job its own password (nomad/jobs/<job> is readable by that job alone).
func natsCredentials(out io.Writer) error {
	jobs := map[string]string{
		natsx.RoleControlPlane: "opensandbox-controlplane",
		natsx.RoleWorker:       "opensandbox-worker",
		natsx.RoleSyncer:       "opensandbox-syncer",
	}
	hashes := ""
	var services []string
	for _, role := range natsx.Roles {
		pw := rand.Text() // base32: safe in a URL and a shell word
		h, err := bcrypt.GenerateFromPassword([]byte(pw), 11)
		if err != nil {
			return err
		}
		hashes += fmt.Sprintf(" %s_password_bcrypt='%s'", role, h)
		services = append(services, fmt.Sprintf("nomad var put nomad/jobs/%s nats_password=%s", jobs[role], pw))
	}
	fmt.Fprintln(out, "# NATS users, one per role (nomad/nats.nomad.hcl); run these once per region.")
	fmt.Fprintf(out, "nomad var put nomad/jobs/nats%s\n", hashes)
	for _, s := range services {
		fmt.Fprintln(out, s)
	}
	return nil
}
