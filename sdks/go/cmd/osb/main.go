// Command osb drives OpenSandbox sandboxes from a shell: create, list, exec,
// interactive shells, file copies, processes and their logs.
package main

import "os"

func main() { os.Exit(run(os.Args[1:], stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr})) }
