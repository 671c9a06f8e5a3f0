package server

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
)

// maxListDepth bounds recursive listings so one request cannot walk forever.
const maxListDepth = 32

// Devices and pipes have no size and may never end (/dev/zero, a FIFO no one
// writes): a read of one ends after specialFileMax bytes or, when the file
// can wait, after specialFileWait.
const (
	specialFileMax  = 10 << 20
	specialFileWait = 30 * time.Second
)

func (s *Server) pathParam(w http.ResponseWriter, r *http.Request, name string) (string, bool) {
	p := r.URL.Query().Get(name)
	if p == "" {
		writeError(w, http.StatusBadRequest, "invalid_argument", name+" is required")
		return "", false
	}
	return s.resolve(p), true
}

func (s *Server) readFile(w http.ResponseWriter, r *http.Request) {
	path, ok := s.pathParam(w, r, "path")
	if !ok {
		return
	}
	// Non-blocking, so that opening a FIFO does not wait for a writer; not
	// a controlling terminal, whatever the path names.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		writeFSError(w, path, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		writeFSError(w, path, err)
		return
	}
	if fi.IsDir() {
		writeError(w, http.StatusBadRequest, "is_a_directory", "is a directory: "+path)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-File-Mode", fmt.Sprintf("%04o", fi.Mode().Perm()))
	if !fi.Mode().IsRegular() {
		deadline := time.Now().Add(specialFileWait)
		f.SetReadDeadline(deadline) // pipes; devices cannot wait
		var r io.Reader = f
		if fi.Mode()&fs.ModeNamedPipe != 0 {
			r = &fifoReader{f: f, deadline: deadline}
		}
		io.Copy(w, io.LimitReader(r, specialFileMax))
		return
	}
	// ServeContent streams from the file and answers Range requests.
	if r.Header.Get("Range") != "" {
		w = &rangeErrorWriter{ResponseWriter: w}
	}
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// fifoReader reads a FIFO as cat does, within a deadline: until its writers
// are gone once one has written, waiting for a first writer meanwhile (a
// FIFO opened without blocking reads end of file while nobody writes).
type fifoReader struct {
	f        *os.File
	deadline time.Time
	wrote    bool
}

func (r *fifoReader) Read(p []byte) (int, error) {
	for {
		n, err := r.f.Read(p)
		if n > 0 {
			r.wrote = true
			return n, err
		}
		if err != io.EOF || r.wrote || time.Now().After(r.deadline) {
			return n, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rangeErrorWriter turns the plain-text 416 answer of http.ServeContent
// into the agent's JSON error, so the worker passes on a code.
type rangeErrorWriter struct {
	http.ResponseWriter
	failed bool
}

func (w *rangeErrorWriter) WriteHeader(status int) {
	if status != http.StatusRequestedRangeNotSatisfiable {
		w.ResponseWriter.WriteHeader(status)
		return
	}
	w.failed = true
	writeError(w.ResponseWriter, status, "range_not_satisfiable", "the requested range is not satisfiable")
}

func (w *rangeErrorWriter) Write(p []byte) (int, error) {
	if w.failed {
		return len(p), nil // ServeContent's text; the JSON is sent
	}
	return w.ResponseWriter.Write(p)
}

// ReadFrom keeps the sendfile path of the underlying writer.
func (w *rangeErrorWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.failed {
		return io.Copy(io.Discard, r)
	}
	return io.Copy(w.ResponseWriter, r)
}

func (s *Server) writeFile(w http.ResponseWriter, r *http.Request) {
	path, ok := s.pathParam(w, r, "path")
	if !ok {
		return
	}
	mode := os.FileMode(0o644)
	if m := r.URL.Query().Get("mode"); m != "" {
		v, err := strconv.ParseUint(m, 8, 32)
		if err != nil || v > 0o7777 {
			writeError(w, http.StatusBadRequest, "invalid_argument", "mode must be octal, e.g. 0644")
			return
		}
		mode = os.FileMode(v)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		writeError(w, http.StatusBadRequest, "is_a_directory", "is a directory: "+path)
		return
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		writeFSError(w, dir, err)
		return
	}
	// Write beside the target and rename, so readers never see half a file.
	tmp, err := os.CreateTemp(dir, ".osb-upload-*")
	if err != nil {
		writeFSError(w, path, err)
		return
	}
	_, err = io.Copy(tmp, r.Body)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), mode)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		writeFSError(w, path, err)
		return
	}
	s.writeEntry(w, path)
}

func (s *Server) remove(w http.ResponseWriter, r *http.Request) {
	path, ok := s.pathParam(w, r, "path")
	if !ok {
		return
	}
	if path == "/" {
		writeError(w, http.StatusBadRequest, "invalid_argument", "refusing to remove /")
		return
	}
	if _, err := os.Lstat(path); err != nil {
		writeFSError(w, path, err)
		return
	}
	if err := os.RemoveAll(path); err != nil {
		writeFSError(w, path, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) stat(w http.ResponseWriter, r *http.Request) {
	path, ok := s.pathParam(w, r, "path")
	if !ok {
		return
	}
	s.writeEntry(w, path)
}

func (s *Server) mkdir(w http.ResponseWriter, r *http.Request) {
	path, ok := s.pathParam(w, r, "path")
	if !ok {
		return
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		writeFSError(w, path, err)
		return
	}
	s.writeEntry(w, path)
}

func (s *Server) rename(w http.ResponseWriter, r *http.Request) {
	var req api.RenameRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil || req.From == "" || req.To == "" {
		writeError(w, http.StatusBadRequest, "invalid_argument", "body must be {\"from\": path, \"to\": path}")
		return
	}
	from, to := s.resolve(req.From), s.resolve(req.To)
	if _, err := os.Lstat(from); err != nil {
		writeFSError(w, from, err)
		return
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		writeFSError(w, to, err)
		return
	}
	if err := os.Rename(from, to); err != nil {
		writeFSError(w, to, err)
		return
	}
	s.writeEntry(w, to)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	path, ok := s.pathParam(w, r, "path")
	if !ok {
		return
	}
	depth := 1
	if d := r.URL.Query().Get("depth"); d != "" {
		v, err := strconv.Atoi(d)
		if err != nil || v < 1 || v > maxListDepth {
			writeError(w, http.StatusBadRequest, "invalid_argument", fmt.Sprintf("depth must be 1..%d", maxListDepth))
			return
		}
		depth = v
	}
	fi, err := os.Stat(path)
	if err != nil {
		writeFSError(w, path, err)
		return
	}
	if !fi.IsDir() {
		writeError(w, http.StatusBadRequest, "not_a_directory", "not a directory: "+path)
		return
	}
	entries := []api.EntryInfo{}
	if err := walk(path, depth, &entries); err != nil {
		writeFSError(w, path, err)
		return
	}
	writeJSON(w, http.StatusOK, entries)
}

func walk(dir string, depth int, out *[]api.EntryInfo) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	sort.Slice(des, func(i, j int) bool { return des[i].Name() < des[j].Name() })
	for _, de := range des {
		p := filepath.Join(dir, de.Name())
		fi, err := de.Info()
		if err != nil {
			continue // removed while listing
		}
		*out = append(*out, entryInfo(p, fi))
		if de.IsDir() && depth > 1 {
			if err := walk(p, depth-1, out); err != nil && !os.IsPermission(err) {
				return err
			}
		}
	}
	return nil
}

func (s *Server) writeEntry(w http.ResponseWriter, path string) {
	fi, err := os.Lstat(path)
	if err != nil {
		writeFSError(w, path, err)
		return
	}
	writeJSON(w, http.StatusOK, entryInfo(path, fi))
}

func entryInfo(path string, fi fs.FileInfo) api.EntryInfo {
	e := api.EntryInfo{
		Name:    fi.Name(),
		Path:    path,
		IsDir:   fi.IsDir(),
		Size:    fi.Size(),
		Mode:    fmt.Sprintf("%04o", fi.Mode().Perm()),
		ModTime: fi.ModTime().UTC(),
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		e.SymlinkTarget, _ = os.Readlink(path)
		if st, err := os.Stat(path); err == nil {
			e.IsDir = st.IsDir()
		}
	}
	return e
}
