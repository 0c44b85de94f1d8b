package loopfs_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pgfleet/pgfleet/shared/local/loopfs"
	"github.com/pgfleet/pgfleet/shared/testutil"
)

func TestCreateMountCopyUnmount(t *testing.T) {
	testutil.RequireRoot(t)
	tests := []struct {
		fstype  string
		sizeMiB int
	}{
		{"ext4", 64},
		{"xfs", loopfs.MinXFSMiB},
	}
	for _, tc := range tests {
		t.Run(tc.fstype, func(t *testing.T) {
			testutil.RequireBinary(t, "mkfs."+tc.fstype)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			dir := t.TempDir()
			img := filepath.Join(dir, "vol.img")
			if err := loopfs.Create(ctx, img, tc.sizeMiB, tc.fstype); err != nil {
				t.Fatal(err)
			}
			if err := loopfs.Create(ctx, img, tc.sizeMiB, tc.fstype); err == nil {
				t.Fatal("Create over an existing image succeeded; want an error")
			}
			var st syscall.Stat_t
			if err := syscall.Stat(img, &st); err != nil {
				t.Fatal(err)
			}
			if allocated := st.Blocks * 512; allocated >= int64(tc.sizeMiB)<<20 {
				t.Errorf("image is not sparse: %d bytes allocated for %d MiB", allocated, tc.sizeMiB)
			}

			m, err := loopfs.MountImage(ctx, img, filepath.Join(dir, "mnt"), tc.fstype)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := m.Unmount(context.Background()); err != nil {
					t.Errorf("cleanup unmount: %v", err)
				}
			})
			if m.Image != img || m.FSType != tc.fstype || m.Path != filepath.Join(dir, "mnt") {
				t.Errorf("Mount = %+v", m)
			}
			if bf, err := loopfs.BackingFile(m.Device); err != nil || bf != img {
				t.Errorf("BackingFile(%s) = %q, %v; want %q", m.Device, bf, err, img)
			}
			payload := bytes.Repeat([]byte("pgfleet "), 4096)
			if err := writeSync(filepath.Join(m.Path, "data.bin"), payload); err != nil {
				t.Fatal(err)
			}

			// A copy taken while frozen is a consistent "snapshot".
			if err := loopfs.Freeze(m.Path); err != nil {
				t.Fatal(err)
			}
			copyPath := filepath.Join(dir, "snap", "vol.img")
			cerr := loopfs.SparseCopy(ctx, img, copyPath)
			if err := loopfs.Thaw(m.Path); err != nil {
				t.Fatal(err)
			}
			if err := loopfs.Thaw(m.Path); err != nil {
				t.Errorf("second Thaw: %v; want nil (already thawed)", err)
			}
			if cerr != nil {
				t.Fatal(cerr)
			}
			if err := syscall.Stat(copyPath, &st); err != nil {
				t.Fatal(err)
			}
			if allocated := st.Blocks * 512; allocated >= int64(tc.sizeMiB)<<20 {
				t.Errorf("copy is not sparse: %d bytes allocated for %d MiB", allocated, tc.sizeMiB)
			}

			// The copy mounts beside its origin (xfs: same UUID, so nouuid) and holds the file.
			cm, err := loopfs.MountImage(ctx, copyPath, filepath.Join(dir, "copy"), tc.fstype)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cm.Unmount(context.Background()) })
			got, err := os.ReadFile(filepath.Join(cm.Path, "data.bin"))
			if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("file in the copy: %d bytes, %v; want %d bytes", len(got), err, len(payload))
			}
			if err := cm.Unmount(ctx); err != nil {
				t.Fatal(err)
			}

			// Unmount is idempotent, thaws a frozen filesystem first, and works from Path alone.
			if err := loopfs.Freeze(m.Path); err != nil {
				t.Fatal(err)
			}
			byPath := &loopfs.Mount{Path: m.Path}
			if err := byPath.Unmount(ctx); err != nil {
				t.Fatal(err)
			}
			if byPath.Device != m.Device || byPath.Image != img {
				t.Errorf("Unmount by path found device %q image %q; want %q %q", byPath.Device, byPath.Image, m.Device, img)
			}
			for i := 0; i < 2; i++ {
				if err := m.Unmount(ctx); err != nil {
					t.Errorf("Unmount #%d: %v", i+2, err)
				}
			}
			if _, err := loopfs.BackingFile(m.Device); err == nil {
				t.Errorf("%s is still attached after Unmount", m.Device)
			}
		})
	}
}

func TestCreateRejects(t *testing.T) {
	tests := []struct {
		name    string
		sizeMiB int
		fstype  string
	}{
		{"unknown filesystem", 64, "vfat"},
		{"xfs too small", 100, "xfs"},
		{"zero size", 0, "ext4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "x.img")
			if err := loopfs.Create(context.Background(), img, tc.sizeMiB, tc.fstype); err == nil {
				t.Fatal("Create succeeded; want an error")
			}
			if _, err := os.Stat(img); err == nil {
				t.Error("a rejected Create left an image behind")
			}
		})
	}
}

func TestBackingFileRejectsNonLoop(t *testing.T) {
	for _, dev := range []string{"/dev/sda", "/dev/nvme0n1", "/dev/loop999999"} {
		if _, err := loopfs.BackingFile(dev); err == nil {
			t.Errorf("BackingFile(%s) succeeded; want an error", dev)
		}
	}
}

func writeSync(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
