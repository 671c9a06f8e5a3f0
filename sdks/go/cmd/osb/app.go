package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	opensandbox "github.com/opensandbox/opensandbox/sdks/go"
)

// stdio is where a command reads and writes; tests pass their own.
type stdio struct {
	in       *os.File
	out, err io.Writer
}

// app is what every command gets.
type app struct {
	client *opensandbox.Client
	io     stdio
}

// command is one subcommand of osb.
type command struct {
	usage string // arguments, shown in help
	help  string // one line
	run   func(ctx context.Context, a *app, args []string) error
}

var commands = map[string]command{
	"create": {"[--template NAME] [--timeout 10m] [--env K=V]... [--json]", "create a sandbox and print its id", runCreate},
	"ls":     {"[--json]", "list sandboxes", runList},
	"exec":   {"[--cwd DIR] [--env K=V]... [--timeout D] [-i] ID -- CMD [ARGS...]", "run a command, stream its output, exit with its code", runExec},
	"shell":  {"[--shell PATH] ID", "open an interactive terminal in a sandbox", runShell},
	"cp":     {"[-q] SRC DST   (one side ID:/path; - is stdin/stdout)", "copy a file into or out of a sandbox", runCopy},
	"kill":   {"ID...", "destroy sandboxes", runKill},
	"ps":     {"[--json] ID", "list a sandbox's processes", runPS},
	"logs":   {"ID PID", "print a process's output, following it until it exits", runLogs},
}

// exitCode makes osb exit with a code without printing an error.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit code %d", int(e)) }

// usageError makes osb print the command's usage and exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// run is the whole program: flags, command, exit code.
func run(args []string, std stdio) int {
	global := flag.NewFlagSet("osb", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	apiURL := global.String("api-url", "", "server address (default $OPENSANDBOX_API_URL or "+opensandbox.DefaultAPIURL+")")
	apiKey := global.String("api-key", "", "API key (default $OPENSANDBOX_API_KEY)")
	if err := global.Parse(args); err != nil || global.NArg() == 0 {
		printUsage(std.err, global)
		return 2
	}
	name, rest := global.Arg(0), global.Args()[1:]
	if name == "help" || name == "-h" || name == "--help" {
		printUsage(std.out, global)
		return 0
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(std.err, "osb: unknown command %q\n\n", name)
		printUsage(std.err, global)
		return 2
	}
	var opts []opensandbox.Option
	if *apiURL != "" {
		opts = append(opts, opensandbox.WithAPIURL(*apiURL))
	}
	if *apiKey != "" {
		opts = append(opts, opensandbox.WithAPIKey(*apiKey))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := cmd.run(ctx, &app{client: opensandbox.NewClient(opts...), io: std}, rest)
	var code exitCode
	var uerr usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &code):
		return int(code)
	case errors.As(err, &uerr), errors.Is(err, flag.ErrHelp):
		if uerr.msg != "" {
			fmt.Fprintf(std.err, "osb %s: %s\n", name, uerr.msg)
		}
		fmt.Fprintf(std.err, "usage: osb %s %s\n", name, cmd.usage)
		return 2
	default:
		fmt.Fprintf(std.err, "osb %s: %v\n", name, err)
		return 1
	}
}

func printUsage(w io.Writer, global *flag.FlagSet) {
	fmt.Fprintln(w, "usage: osb [--api-url URL] [--api-key KEY] COMMAND [ARGS]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-7s %s\n          osb %s %s\n", n, commands[n].help, n, commands[n].usage)
	}
	fmt.Fprintln(w, "\nOPENSANDBOX_API_URL and OPENSANDBOX_API_KEY configure the server.")
}
