// Package watch reports file system changes under a path with inotify,
// optionally following new subdirectories.
package watch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/opensandbox/opensandbox/services/shared/api"
)

// MaxDirs bounds the directories one recursive watch may hold: each is a
// kernel inotify watch, a resource shared by the whole host user.
const MaxDirs = 8192

// ErrTooManyDirs is returned when a tree has more than MaxDirs directories.
var ErrTooManyDirs = fmt.Errorf("more than %d directories to watch", MaxDirs)

const mask = syscall.IN_CREATE | syscall.IN_MODIFY | syscall.IN_DELETE | syscall.IN_MOVED_FROM |
	syscall.IN_MOVED_TO | syscall.IN_ATTRIB | syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF

// Watcher is one inotify instance. It is used by one goroutine; Close may be
// called from another to end a Next in progress.
type Watcher struct {
	f         *os.File
	fd        int
	recursive bool
	root      string
	dirs      map[int32]string // watch descriptor -> directory path (or the watched file)
	movedFrom map[uint32]string
	pending   []api.WatchEvent
	buf       []byte
}

// New watches path; with recursive, every directory below it too.
func New(path string, recursive bool) (*Watcher, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &Watcher{
		// A non-blocking descriptor is registered with Go's poller, so Read
		// parks the goroutine and Close wakes it.
		f: os.NewFile(uintptr(fd), "inotify"), fd: fd, recursive: recursive && fi.IsDir(), root: path,
		dirs: map[int32]string{}, movedFrom: map[uint32]string{}, buf: make([]byte, 64<<10),
	}
	if err := w.add(path); err != nil {
		w.Close()
		return nil, err
	}
	if w.recursive {
		if err := w.addTree(path); err != nil {
			w.Close()
			return nil, err
		}
	}
	return w, nil
}

// Close removes every watch (by closing the inotify instance).
func (w *Watcher) Close() error { return w.f.Close() }

func (w *Watcher) add(dir string) error {
	if len(w.dirs) >= MaxDirs {
		return ErrTooManyDirs
	}
	wd, err := syscall.InotifyAddWatch(w.fd, dir, mask)
	if err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	w.dirs[int32(wd)] = dir
	return nil
}

// addTree watches every directory below dir; directories that vanish while
// walking are skipped.
func (w *Watcher) addTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
				return nil
			}
			return err
		}
		if !d.IsDir() || p == dir {
			return nil
		}
		if err := w.add(p); err != nil {
			if errors.Is(err, ErrTooManyDirs) {
				return err
			}
			return nil
		}
		return nil
	})
}

// SetReadDeadline makes a Next that waits past t fail with os.ErrDeadlineExceeded.
func (w *Watcher) SetReadDeadline(t time.Time) error { return w.f.SetReadDeadline(t) }

// Next returns the next event, blocking until one happens or Close. It
// returns io.EOF once nothing is watched any more (the path was removed).
func (w *Watcher) Next() (api.WatchEvent, error) {
	for len(w.pending) == 0 {
		if len(w.dirs) == 0 {
			return api.WatchEvent{}, io.EOF
		}
		n, err := w.f.Read(w.buf)
		if err != nil {
			return api.WatchEvent{}, err
		}
		w.parse(w.buf[:n])
	}
	ev := w.pending[0]
	w.pending = w.pending[1:]
	return ev, nil
}

// parse turns raw inotify records into events. Like fsnotify, a rename is
// reported as "rename" of the old path and "create" of the new one.
func (w *Watcher) parse(b []byte) {
	for len(b) >= syscall.SizeofInotifyEvent {
		wd := int32(binary.NativeEndian.Uint32(b[0:]))
		m := binary.NativeEndian.Uint32(b[4:])
		cookie := binary.NativeEndian.Uint32(b[8:])
		nameLen := int(binary.NativeEndian.Uint32(b[12:]))
		end := syscall.SizeofInotifyEvent + nameLen
		if end > len(b) {
			return
		}
		name := strings.TrimRight(string(b[syscall.SizeofInotifyEvent:end]), "\x00")
		b = b[end:]
		w.handle(wd, m, cookie, name)
	}
}

func (w *Watcher) handle(wd int32, m, cookie uint32, name string) {
	if m&syscall.IN_Q_OVERFLOW != 0 {
		w.emit(api.WatchOverflow, "", false)
		return
	}
	dir, ok := w.dirs[wd]
	if !ok {
		return
	}
	if m&syscall.IN_IGNORED != 0 {
		delete(w.dirs, wd)
		return
	}
	isDir := m&syscall.IN_ISDIR != 0
	path := dir
	if name != "" {
		path = filepath.Join(dir, name)
	}
	switch {
	case m&syscall.IN_CREATE != 0:
		w.emit(api.WatchCreate, path, isDir)
		if isDir && w.recursive {
			w.add(path)
			w.addTree(path) // a tree created at once (mkdir -p) is below it already
		}
	case m&syscall.IN_MOVED_TO != 0:
		w.emit(api.WatchCreate, path, isDir)
		if isDir && w.recursive {
			if old, ok := w.movedFrom[cookie]; ok {
				w.rebase(old, path)
			} else {
				w.add(path)
				w.addTree(path)
			}
		}
		delete(w.movedFrom, cookie)
	case m&syscall.IN_MOVED_FROM != 0:
		w.emit(api.WatchRename, path, isDir)
		if isDir && len(w.movedFrom) < 1024 {
			w.movedFrom[cookie] = path
		}
	case m&syscall.IN_MODIFY != 0:
		w.emit(api.WatchWrite, path, isDir)
	case m&syscall.IN_ATTRIB != 0:
		w.emit(api.WatchChmod, path, isDir)
	case m&syscall.IN_DELETE != 0:
		w.emit(api.WatchRemove, path, isDir)
	case m&(syscall.IN_DELETE_SELF|syscall.IN_MOVE_SELF) != 0 && path == w.root:
		// The watched path itself went away; its parent would report it,
		// but nobody watches the parent.
		w.emit(api.WatchRemove, path, w.recursive)
	}
}

// rebase renames the watched directories below old after a move within the tree.
func (w *Watcher) rebase(old, new string) {
	for wd, p := range w.dirs {
		if p == old || strings.HasPrefix(p, old+"/") {
			w.dirs[wd] = new + strings.TrimPrefix(p, old)
		}
	}
}

func (w *Watcher) emit(typ, path string, isDir bool) {
	w.pending = append(w.pending, api.WatchEvent{Type: typ, Path: path, IsDir: isDir})
}
