//go:build integration

package opensandbox_test

import (
	"context"
	"fmt"

	opensandbox "github.com/opensandbox/opensandbox/sdks/go"
)

// The quick start of README.md, line for line.
func Example() {
	ctx := context.Background()
	client := opensandbox.NewClient() // reads OPENSANDBOX_API_URL and OPENSANDBOX_API_KEY
	sbx, _ := client.Create(ctx, opensandbox.CreateOptions{Template: "base"})
	defer sbx.Kill(ctx)
	res, _ := sbx.Commands().Run(ctx, "echo hello from $(uname -s)", opensandbox.RunOptions{})
	fmt.Print(res.Stdout)
	// Output: hello from Linux
}
