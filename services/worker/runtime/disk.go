package runtime

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// diskMode is how a sandbox's disk limit is enforced.
type diskMode int

const (
	// diskStorageOpt: Podman's overlay driver on XFS with project quotas
	// enforces `size` itself (production hosts).
	diskStorageOpt diskMode = iota + 1
	// diskLoop: the container's writable layer directory is a bind of a
	// sparse ext4 image of the sandbox's own, attached to a loop device
	// (hosts without project quotas; see docs/security.md, Disk quotas).
	diskLoop
)

func (d diskMode) String() string {
	switch d {
	case diskStorageOpt:
		return "storage-opt"
	case diskLoop:
		return "loop"
	}
	return "none"
}

// diskModeFor picks the mechanism a Podman store supports. A per-sandbox
// image bound over the layer directory is only safe when the overlay driver
// does not bind its home onto itself (skip_mount_home): that bind, made and
// dropped as layers are mounted, would hide ours.
func diskModeFor(driver, backingFS string, skipMountHome bool) (diskMode, error) {
	switch {
	case driver != "overlay":
		return 0, fmt.Errorf("disk limits need Podman's overlay storage driver, the service uses %q", driver)
	case backingFS == "xfs":
		return diskStorageOpt, nil
	case skipMountHome:
		return diskLoop, nil
	}
	return 0, fmt.Errorf("disk limits need Podman's overlay storage on XFS with project quotas, or overlay.skip_mount_home=true "+
		"in the service's storage.conf for per-sandbox disk images (scripts/bootstrap.sh sets that up); the store is on %s", backingFS)
}

// makeDisk creates a sparse ext4 image of size bytes at dir/disk.img,
// attaches it to a loop device and mounts it at dir/disk, which it returns.
// The loop device goes away by itself once the file system is unmounted.
func makeDisk(ctx context.Context, dir string, size int64) (string, error) {
	img := filepath.Join(dir, "disk.img")
	f, err := os.OpenFile(img, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return "", err
	}
	// No journal (a sandbox's disk does not outlive a host crash), no
	// blocks reserved for root, inode tables left zero: the image is sparse
	// and creating it takes milliseconds at any size.
	out, err := exec.CommandContext(ctx, hostTool("mkfs.ext4"), "-q", "-F", "-m", "0", "-O", "^has_journal",
		"-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", img).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("mkfs.ext4: %w: %s", err, strings.TrimSpace(string(out)))
	}
	loop, err := attachLoop(f)
	if err != nil {
		return "", err
	}
	defer loop.Close() // the mount holds the device; autoclear frees it after
	mnt := filepath.Join(dir, "disk")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		return "", err
	}
	// noinit_itable: the image is sparse, so its inode tables already read
	// as zeros; the kernel need not write them (which would also fill the
	// sparse file).
	if err := unix.Mount(loop.Name(), mnt, "ext4", 0, "noinit_itable"); err != nil {
		return "", fmt.Errorf("mount %s: %w", loop.Name(), err)
	}
	return mnt, nil
}

// removeDisk undoes makeDisk in dir.
func removeDisk(dir string) error {
	if err := Unmount(filepath.Join(dir, "disk")); err != nil {
		return err
	}
	var errs []error
	for _, name := range []string{"disk", "disk.img"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// hostTool finds a system program by name on $PATH, else in the usual
// system directories (a worker's PATH may lack the sbin ones).
func hostTool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		if p := filepath.Join(dir, name); unix.Access(p, unix.X_OK) == nil {
			return p
		}
	}
	return name
}

// attachLoop binds a free loop device to f with autoclear set.
func attachLoop(f *os.File) (*os.File, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	for range 20 { // another process may take the free device first
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("find a free loop device: %w", err)
		}
		dev, err := os.OpenFile("/dev/loop"+strconv.Itoa(n), os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		cfg := unix.LoopConfig{Fd: uint32(f.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if err == nil {
			return dev, nil
		}
		dev.Close()
		if !errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("attach %s to a loop device: %w", f.Name(), err)
		}
	}
	return nil, errors.New("no free loop device")
}

// bindLayer moves a container's writable layer directory onto the disk:
// it copies what the storage driver put there (empty directories and two
// small files) to disk/layer and binds that over layer.
func bindLayer(disk, layer string) error {
	dst := filepath.Join(disk, "layer")
	if err := copyTree(layer, dst); err != nil {
		return fmt.Errorf("copy layer skeleton: %w", err)
	}
	if err := unix.Mount(dst, layer, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind the disk over %s: %w", layer, err)
	}
	return nil
}

// unbindLayer undoes bindLayer; a layer that is not a mount is left alone.
func unbindLayer(layer string) error {
	if !isMountPoint(layer) {
		return nil
	}
	return unix.Unmount(layer, unix.MNT_DETACH)
}

// copyTree copies a small tree of directories, files and symlinks,
// keeping owners and modes.
func copyTree(src, dst string) error {
	return filepath.Walk(src, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		st := fi.Sys().(*syscall.Stat_t)
		switch {
		case fi.IsDir():
			if err := os.Mkdir(to, fi.Mode().Perm()); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := copyFile(path, to, fi.Mode().Perm()); err != nil {
				return err
			}
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, to); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unexpected file type %s", path, fi.Mode().Type())
		}
		if err := os.Lchown(to, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return os.Chmod(to, fi.Mode()) // mkdir and create apply the umask
		}
		return nil
	})
}

func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// mountTmpfs mounts a tmpfs of at most size bytes on dir, owned by uid:gid
// with mode 0700.
func mountTmpfs(dir string, size int64, uid, gid int) error {
	opts := fmt.Sprintf("size=%d,nr_inodes=1024,mode=0700,uid=%d,gid=%d", size, uid, gid)
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return fmt.Errorf("mount a tmpfs on %s: %w", dir, err)
	}
	return nil
}

// isMountPoint reports whether path is the root of a mount of another file
// system than its parent's (the binds and mounts made here always are).
func isMountPoint(path string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(path, &st) != nil || unix.Lstat(filepath.Dir(path), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// Unmount detaches every mount at or below dir, deepest first: a sandbox's
// disk and run directory, after the runtime removed its container. Lazy
// (MNT_DETACH): a file system still in use goes away when its last user
// does, and its loop device with it.
func Unmount(dir string) error {
	dir = filepath.Clean(dir)
	points, err := mountPoints()
	if err != nil {
		return err
	}
	var under []string
	for _, p := range points {
		if p == dir || strings.HasPrefix(p, dir+"/") {
			under = append(under, p)
		}
	}
	sort.Slice(under, func(i, j int) bool { return len(under[i]) > len(under[j]) })
	var errs []error
	for _, p := range under {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// mountPoints lists the mount points of this process's mount namespace.
func mountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			out = append(out, unescapeMountPath(fields[4]))
		}
	}
	return out, sc.Err()
}

// unescapeMountPath decodes the octal escapes (\040 for a space) of
// /proc/self/mountinfo.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// DiskUsage returns the used and total bytes of a sandbox's disk, when it
// has one of its own under stateDir.
func DiskUsage(stateDir string) (used, total int64, ok bool) {
	mnt := filepath.Join(stateDir, "disk")
	if !isMountPoint(mnt) {
		return 0, 0, false
	}
	var st unix.Statfs_t
	if unix.Statfs(mnt, &st) != nil {
		return 0, 0, false
	}
	total = int64(st.Blocks) * st.Bsize
	return total - int64(st.Bfree)*st.Bsize, total, true
}
