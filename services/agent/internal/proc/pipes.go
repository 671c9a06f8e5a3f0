package proc

import (
	"fmt"
	"os"
	"syscall"
)

// piped is a started process and our ends of its stdin, stdout and stderr.
type piped struct {
	pid    int
	done   <-chan syscall.WaitStatus
	stdin  *os.File
	stdout *os.File
	stderr *os.File
}

// startPiped starts spec in its own process group with fresh pipes for its
// standard streams. The pipe ends are pollable, so deadlines work on them.
func (r *Reaper) startPiped(spec Spec) (*piped, error) {
	path, err := LookPath(spec.Argv[0], Getenv(spec.Env, "PATH"))
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, spec.Argv[0])
	}
	if fi, err := os.Stat(spec.Dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("cwd %q: %w", spec.Dir, os.ErrNotExist)
	}
	var files []*os.File // every end, closed on failure
	fail := func(err error) (*piped, error) {
		for _, f := range files {
			f.Close()
		}
		return nil, err
	}
	pipe := func() (*os.File, *os.File, error) {
		rd, wr, err := os.Pipe()
		if err == nil {
			files = append(files, rd, wr)
		}
		return rd, wr, err
	}
	inR, inW, err := pipe()
	if err != nil {
		return fail(err)
	}
	outR, outW, err := pipe()
	if err != nil {
		return fail(err)
	}
	errR, errW, err := pipe()
	if err != nil {
		return fail(err)
	}
	pid, done, err := r.Start(path, spec.Argv, &syscall.ProcAttr{
		Dir:   spec.Dir,
		Env:   spec.Env,
		Files: []uintptr{inR.Fd(), outW.Fd(), errW.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		return fail(err)
	}
	// The child holds its own copies now.
	inR.Close()
	outW.Close()
	errW.Close()
	return &piped{pid: pid, done: done, stdin: inW, stdout: outR, stderr: errR}, nil
}

// KillGroup sends sig to the process group of pid, or to pid alone when it
// leads no group.
func KillGroup(pid int, sig syscall.Signal) error {
	err := syscall.Kill(-pid, sig)
	if err == syscall.ESRCH {
		err = syscall.Kill(pid, sig)
	}
	return err
}
