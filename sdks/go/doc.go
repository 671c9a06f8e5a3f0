// Package opensandbox is the Go client of OpenSandbox, a self-hostable
// platform of isolated Linux sandboxes for AI agents and code execution.
//
// A Client makes and finds sandboxes; a Sandbox is the handle on one of them,
// with one handle per resource below it:
//
//	client := opensandbox.NewClient() // OPENSANDBOX_API_URL, OPENSANDBOX_API_KEY
//	sbx, err := client.Create(ctx, opensandbox.CreateOptions{Template: "base"})
//	if err != nil { ... }
//	defer sbx.Kill(context.WithoutCancel(ctx))
//	res, err := sbx.Commands().Run(ctx, "echo hello", opensandbox.RunOptions{})
//
// Commands runs commands (to completion, streamed, or in the background),
// Files reads, writes, lists and watches files, and PTY opens interactive
// terminals. Every failed call returns an *Error that matches the sentinels
// (ErrNotFound, ErrAuthentication, ErrRateLimit, ErrInvalidArgument,
// ErrTimeout, ErrSandboxGone, ErrUnavailable) with errors.Is.
//
// Lifecycle calls go to the API URL with the API key. When a sandbox lives
// behind a worker, the create answer carries its connectURL and a token:
// data-path calls then go there with the token, which is renewed through the
// control plane before it expires.
package opensandbox
