// Package loopfs makes real filesystems out of image files: a sparse image formatted ext4 or xfs,
// attached to a loop device and mounted. The local site keeps PostgreSQL on such mounts, and a
// sparse block copy of an image taken while its filesystem is frozen is the local stand-in for an
// EBS snapshot. Everything here needs root.
package loopfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Mount is a filesystem image attached to a loop device and mounted at Path.
type Mount struct {
	Image  string
	Device string
	Path   string
	FSType string

	released bool
}

// MinXFSMiB is the smallest xfs filesystem mkfs.xfs makes.
const MinXFSMiB = 300

// Create makes a sparse image file of sizeMiB and formats it with fstype (ext4 or xfs). It
// refuses to overwrite an existing file.
func Create(ctx context.Context, imagePath string, sizeMiB int, fstype string) error {
	var mkfs []string
	switch fstype {
	case "ext4":
		mkfs = []string{"mkfs.ext4", "-q", "-F", imagePath}
	case "xfs":
		if sizeMiB < MinXFSMiB {
			return fmt.Errorf("create %s: xfs needs at least %d MiB, got %d", imagePath, MinXFSMiB, sizeMiB)
		}
		mkfs = []string{"mkfs.xfs", "-q", "-f", imagePath}
	default:
		return fmt.Errorf("create %s: unsupported filesystem %q (use ext4 or xfs)", imagePath, fstype)
	}
	if sizeMiB <= 0 {
		return fmt.Errorf("create %s: size %d MiB must be positive", imagePath, sizeMiB)
	}
	f, err := os.OpenFile(imagePath, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create image: %w", err)
	}
	terr := f.Truncate(int64(sizeMiB) << 20)
	cerr := f.Close()
	if err := errors.Join(terr, cerr); err != nil {
		_ = os.Remove(imagePath)
		return fmt.Errorf("size image %s: %w", imagePath, err)
	}
	if out, err := run(ctx, mkfs[0], mkfs[1:]...); err != nil {
		_ = os.Remove(imagePath)
		return fmt.Errorf("format %s as %s: %w: %s", imagePath, fstype, err, out)
	}
	return nil
}

// MountImage attaches imagePath to a free loop device and mounts it at mountPoint (created if
// missing). xfs is always mounted with nouuid: restored copies share their origin's UUID. (The
// function cannot share the name of the Mount type it returns.)
func MountImage(ctx context.Context, imagePath, mountPoint string, fstype string) (*Mount, error) {
	if _, err := os.Stat(imagePath); err != nil {
		return nil, fmt.Errorf("mount image: %w", err)
	}
	if err := os.MkdirAll(mountPoint, 0o755); err != nil {
		return nil, fmt.Errorf("create mount point: %w", err)
	}
	out, err := run(ctx, "losetup", "--find", "--show", imagePath)
	if err != nil {
		return nil, fmt.Errorf("attach %s to a loop device: %w: %s", imagePath, err, out)
	}
	dev := strings.TrimSpace(out)
	args := []string{"-t", fstype}
	if fstype == "xfs" {
		args = append(args, "-o", "nouuid")
	}
	args = append(args, dev, mountPoint)
	if out, err := run(ctx, "mount", args...); err != nil {
		_, _ = run(context.WithoutCancel(ctx), "losetup", "-d", dev)
		return nil, fmt.Errorf("mount %s (%s) at %s: %w: %s", imagePath, dev, mountPoint, err, out)
	}
	return &Mount{Image: imagePath, Device: dev, Path: mountPoint, FSType: fstype}, nil
}

// Unmount thaws the filesystem if it is frozen, unmounts it and detaches the loop device. It is
// idempotent, and works with only Path set (the device is found from the mount table).
func (m *Mount) Unmount(ctx context.Context) error {
	if m == nil || m.released {
		return nil
	}
	if m.Path != "" {
		src, fstype, mounted, err := mountOf(m.Path)
		if err != nil {
			return err
		}
		if mounted {
			if m.Device == "" && strings.HasPrefix(src, "/dev/loop") {
				m.Device = src
				if bf, err := BackingFile(src); err == nil && m.Image == "" {
					m.Image = bf
				}
			}
			if m.FSType == "" {
				m.FSType = fstype
			}
			if err := Thaw(m.Path); err != nil {
				return fmt.Errorf("unmount %s: %w", m.Path, err)
			}
			if err := umount(ctx, m.Path); err != nil {
				return err
			}
		}
	}
	if m.Device != "" {
		bf, err := BackingFile(m.Device)
		// Detach only the device still backed by our image: a detached number may be reused.
		if err == nil && (m.Image == "" || sameFile(bf, m.Image)) {
			if out, err := run(ctx, "losetup", "-d", m.Device); err != nil {
				return fmt.Errorf("detach %s: %w: %s", m.Device, err, out)
			}
		}
	}
	m.released = true
	return nil
}

func umount(ctx context.Context, path string) error {
	var out string
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		out, err = run(ctx, "umount", path)
		if err == nil || !strings.Contains(out, "busy") {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("unmount %s: %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("unmount %s: %w: %s", path, err, out)
	}
	return nil
}

// FIFREEZE and FITHAW are _IOWR('X', 119, int) and _IOWR('X', 120, int).
const (
	ioctlFreeze = 0xC0045877
	ioctlThaw   = 0xC0045878
)

// Freeze freezes the filesystem mounted at path (fsfreeze -f). Thaw it, always.
func Freeze(path string) error {
	return fsIoctl(path, ioctlFreeze, "freeze")
}

// Thaw thaws the filesystem mounted at path (fsfreeze -u). A filesystem that is not frozen is
// already thawed: that is not an error.
func Thaw(path string) error {
	err := fsIoctl(path, ioctlThaw, "thaw")
	if errors.Is(err, syscall.EINVAL) {
		return nil
	}
	return err
}

func fsIoctl(path string, req uintptr, what string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	defer f.Close()
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), req, 0); errno != 0 {
		return fmt.Errorf("%s %s: %w", what, path, errno)
	}
	return nil
}

// SparseCopy copies an image block for block, keeping holes (a reflink when the filesystem can,
// else cp --sparse=always). Taken while the image's filesystem is frozen, the copy is what an EBS
// snapshot of the volume would hold.
func SparseCopy(ctx context.Context, src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if out, err := run(ctx, "cp", "--reflink=auto", "--sparse=always", "--", src, dst); err != nil {
		_ = os.Remove(dst)
		return fmt.Errorf("copy %s to %s: %w: %s", src, dst, err, out)
	}
	return nil
}

// BackingFile returns the image file behind a loop device such as /dev/loop3.
func BackingFile(device string) (string, error) {
	name := filepath.Base(device)
	if !strings.HasPrefix(name, "loop") {
		return "", fmt.Errorf("backing file of %s: not a loop device", device)
	}
	b, err := os.ReadFile(filepath.Join("/sys/block", name, "loop", "backing_file"))
	if err != nil {
		return "", fmt.Errorf("backing file of %s: %w", device, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// mountOf finds the topmost mount at path in /proc/self/mountinfo.
func mountOf(path string) (source, fstype string, mounted bool, err error) {
	want := filepath.Clean(path)
	if p, err := filepath.EvalSymlinks(want); err == nil {
		want = p
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", "", false, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent maj:min root mountpoint options [optional...] - fstype source superopts
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		if unescape(fields[4]) != want {
			continue
		}
		for i := 6; i < len(fields)-2; i++ {
			if fields[i] == "-" {
				fstype, source, mounted = fields[i+1], unescape(fields[i+2]), true
				break
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", "", false, fmt.Errorf("read mount table: %w", err)
	}
	return source, fstype, mounted, nil
}

// unescape decodes the octal escapes (\040) of the mount table.
func unescape(s string) string {
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

func sameFile(a, b string) bool {
	if a == b {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

func run(ctx context.Context, name string, args ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
