package opensandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
)

// Files reaches a sandbox's file system. Get it with Sandbox.Files. Paths are
// absolute paths inside the sandbox.
type Files struct{ sbx *Sandbox }

// TransferOptions configures WriteStream, Upload and Download.
type TransferOptions struct {
	// Mode sets the permissions of a written file, e.g. "0755". Upload
	// defaults to the local file's permissions, other writes to the server's.
	Mode string
	// OnProgress is called as bytes move (about every MiB, and at the end).
	OnProgress ProgressFunc
}

func pathQuery(path string) url.Values { return url.Values{"path": {path}} }

// ReadStream opens a file for reading; the bytes stream from the sandbox as
// the caller reads. Close the reader when done.
func (f *Files) ReadStream(ctx context.Context, path string) (*FileReader, error) {
	resp, err := f.sbx.dataRaw(ctx, http.MethodGet, "/files", pathQuery(path), nil, -1, nil)
	if err != nil {
		return nil, err
	}
	return &FileReader{ReadCloser: resp.Body, Size: resp.ContentLength, Mode: resp.Header.Get("X-File-Mode")}, nil
}

// FileReader is an open file of a sandbox.
type FileReader struct {
	io.ReadCloser
	Size int64  // -1 when the server did not say
	Mode string // permission bits when the server said, e.g. "0644"
}

// ReadBytes returns a whole file.
func (f *Files) ReadBytes(ctx context.Context, path string) ([]byte, error) {
	r, err := f.ReadStream(ctx, path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, transportError("read "+path, err)
	}
	return b, nil
}

// Read returns a whole file as a string.
func (f *Files) Read(ctx context.Context, path string) (string, error) {
	b, err := f.ReadBytes(ctx, path)
	return string(b), err
}

// Write streams r into a file, replacing it; missing parent directories are
// created. The length is sent when r tells it (bytes, strings.Reader, ...),
// otherwise the body is chunked; nothing is held in memory.
func (f *Files) Write(ctx context.Context, path string, r io.Reader) (*EntryInfo, error) {
	return f.WriteStream(ctx, path, r, lengthOf(r), TransferOptions{})
}

// WriteStream is Write with a known size (-1 for unknown) and options.
func (f *Files) WriteStream(ctx context.Context, path string, r io.Reader, size int64, opts TransferOptions) (*EntryInfo, error) {
	q := pathQuery(path)
	if opts.Mode != "" {
		q.Set("mode", opts.Mode)
	}
	if opts.OnProgress != nil {
		r = &progressReader{r: r, total: size, fn: opts.OnProgress}
	}
	if size == 0 {
		r = http.NoBody
	}
	resp, err := f.sbx.dataRaw(ctx, http.MethodPut, "/files", q, io.NopCloser(r), size,
		http.Header{"Content-Type": {"application/octet-stream"}})
	if err != nil {
		return nil, err
	}
	var e EntryInfo
	if err := decodeJSON("write "+path, resp, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// lengthOf returns the length of readers that know it, else -1.
func lengthOf(r io.Reader) int64 {
	if l, ok := r.(interface{ Len() int }); ok {
		return int64(l.Len())
	}
	return -1
}

// Upload copies a local file into the sandbox.
func (f *Files) Upload(ctx context.Context, localPath, remotePath string, opts TransferOptions) (*EntryInfo, error) {
	src, err := os.Open(localPath)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, &Error{Op: "upload", Code: CodeInvalidArgument, Message: localPath + " is a directory"}
	}
	if opts.Mode == "" {
		opts.Mode = fmt.Sprintf("%04o", st.Mode().Perm())
	}
	return f.WriteStream(ctx, remotePath, src, st.Size(), opts)
}

// DownloadTo streams a file of the sandbox into w and returns the bytes copied.
func (f *Files) DownloadTo(ctx context.Context, remotePath string, w io.Writer, opts TransferOptions) (int64, error) {
	src, err := f.ReadStream(ctx, remotePath)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	var r io.Reader = src
	if opts.OnProgress != nil {
		r = &progressReader{r: src, total: src.Size, fn: opts.OnProgress}
	}
	n, err := io.Copy(w, r)
	if err != nil {
		return n, transportError("download "+remotePath, err)
	}
	if src.Size >= 0 && n != src.Size {
		return n, &Error{Op: "download " + remotePath, Code: CodeTransport,
			Message: fmt.Sprintf("got %d of %d bytes", n, src.Size)}
	}
	return n, nil
}

// Download copies a file of the sandbox to localPath. The file appears
// complete or not at all: bytes go to a temporary file renamed at the end.
func (f *Files) Download(ctx context.Context, remotePath, localPath string, opts TransferOptions) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(localPath), "."+filepath.Base(localPath)+".part*")
	if err != nil {
		return 0, err
	}
	n, err := f.DownloadTo(ctx, remotePath, tmp, opts)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), localPath)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return n, err
	}
	return n, nil
}

// List returns the entries of a directory, depth levels deep (at least 1).
func (f *Files) List(ctx context.Context, path string, depth int) ([]EntryInfo, error) {
	q := pathQuery(path)
	if depth > 1 {
		q.Set("depth", strconv.Itoa(depth))
	}
	var out []EntryInfo
	if err := f.sbx.dataJSON(ctx, http.MethodGet, "/files/list", q, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Stat describes one entry.
func (f *Files) Stat(ctx context.Context, path string) (*EntryInfo, error) {
	var e EntryInfo
	if err := f.sbx.dataJSON(ctx, http.MethodGet, "/files/stat", pathQuery(path), nil, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// Exists reports whether path exists.
func (f *Files) Exists(ctx context.Context, path string) (bool, error) {
	_, err := f.Stat(ctx, path)
	var e *Error
	if errors.As(err, &e) && e.Code == CodeFileNotFound {
		return false, nil
	}
	return err == nil, err
}

// MakeDir creates a directory and its parents (mkdir -p).
func (f *Files) MakeDir(ctx context.Context, path string) (*EntryInfo, error) {
	var e EntryInfo
	if err := f.sbx.dataJSON(ctx, http.MethodPost, "/files/mkdir", pathQuery(path), nil, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// Remove deletes a file or a directory with its contents.
func (f *Files) Remove(ctx context.Context, path string) error {
	return f.sbx.dataJSON(ctx, http.MethodDelete, "/files", pathQuery(path), nil, nil)
}

// Rename moves from to to.
func (f *Files) Rename(ctx context.Context, from, to string) (*EntryInfo, error) {
	body := struct {
		From string `json:"from"`
		To   string `json:"to"`
	}{from, to}
	var e EntryInfo
	if err := f.sbx.dataJSON(ctx, http.MethodPost, "/files/rename", nil, body, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// progressReader reports the bytes read through it.
type progressReader struct {
	r           io.Reader
	total, done int64
	last        int64
	fn          ProgressFunc
}

const progressStep = 1 << 20

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if p.done-p.last >= progressStep || (err == io.EOF && p.done != p.last) || (p.done == p.total && p.done != p.last) {
		p.last = p.done
		p.fn(p.done, p.total)
	}
	return n, err
}
