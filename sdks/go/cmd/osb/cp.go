package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	opensandbox "github.com/opensandbox/opensandbox/sdks/go"
)

// progressFrom is the size from which cp shows progress on stderr.
const progressFrom = 8 << 20

// remote splits "ID:/path"; anything else is a local path.
func remote(s string) (id, p string, ok bool) {
	id, p, ok = strings.Cut(s, ":")
	if !ok || id == "" || !strings.HasPrefix(p, "/") {
		return "", "", false
	}
	return id, p, true
}

func runCopy(ctx context.Context, a *app, args []string) error {
	fs := newFlags("cp", a.io.err)
	quiet := fs.Bool("q", false, "show no progress")
	pos, _, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(pos, "SRC", "DST"); err != nil {
		return err
	}
	srcID, srcPath, srcRemote := remote(pos[0])
	dstID, dstPath, dstRemote := remote(pos[1])
	switch {
	case srcRemote && !dstRemote:
		return a.download(ctx, srcID, srcPath, pos[1], *quiet)
	case !srcRemote && dstRemote:
		return a.upload(ctx, pos[0], dstID, dstPath, *quiet)
	default:
		return usagef("exactly one of SRC and DST must be ID:/absolute/path")
	}
}

func (a *app) upload(ctx context.Context, local, id, dst string, quiet bool) error {
	sbx, err := a.client.Connect(ctx, id)
	if err != nil {
		return err
	}
	files := sbx.Files()
	var src io.Reader = a.io.in
	total := int64(-1)
	opts := opensandbox.TransferOptions{}
	name := "stdin"
	if local != "-" {
		f, err := os.Open(local)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if st.IsDir() {
			return errors.New(local + " is a directory; cp copies one file")
		}
		src, total, name = f, st.Size(), filepath.Base(local)
		opts.Mode = octal(st.Mode().Perm())
	}
	// Into a directory: keep the file's name.
	if strings.HasSuffix(dst, "/") {
		dst += name
	} else if e, err := files.Stat(ctx, dst); err == nil && e.IsDir {
		dst = path.Join(dst, name)
	}
	p := a.progress("upload "+name, total, quiet)
	opts.OnProgress = p.update
	_, err = files.WriteStream(ctx, dst, src, total, opts)
	p.finish(err)
	return err
}

func (a *app) download(ctx context.Context, id, src, local string, quiet bool) error {
	sbx, err := a.client.Connect(ctx, id)
	if err != nil {
		return err
	}
	r, err := sbx.Files().ReadStream(ctx, src)
	if err != nil {
		return err
	}
	defer r.Close()
	p := a.progress("download "+path.Base(src), r.Size, quiet)
	if local == "-" {
		err = copyWithProgress(a.io.out, r, r.Size, p.update)
		p.finish(err)
		return err
	}
	if st, serr := os.Stat(local); (serr == nil && st.IsDir()) || strings.HasSuffix(local, string(os.PathSeparator)) {
		local = filepath.Join(local, path.Base(src))
	}
	// The file appears complete or not at all.
	tmp, err := os.CreateTemp(filepath.Dir(local), "."+filepath.Base(local)+".part*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if m, ok := parseOctal(r.Mode); ok {
		err = tmp.Chmod(m)
	}
	if err == nil {
		err = copyWithProgress(tmp, r, r.Size, p.update)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), local)
	}
	p.finish(err)
	return err
}
