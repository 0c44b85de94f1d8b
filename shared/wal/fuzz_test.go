package wal

import (
	"strings"
	"testing"
)

// rebuildName writes a parsed File back into a file name.
func rebuildName(f File) string {
	var b strings.Builder
	switch f.Kind {
	case KindSegment:
		b.WriteString(f.Segment.String())
	case KindPartial:
		b.WriteString(f.Segment.String() + partialSuffix)
	case KindBackup:
		var off [8]byte
		putHex32(off[:], f.BackupOffset)
		b.WriteString(f.Segment.String() + "." + string(off[:]) + backupSuffix)
	case KindHistory:
		b.WriteString(f.Segment.String()[:timelineNameLen] + historySuffix)
	}
	if f.SHA1 != "" {
		b.WriteString("-" + f.SHA1)
	}
	if f.Compression != "" {
		b.WriteString("." + f.Compression)
	}
	return b.String()
}

func FuzzParseFileName(f *testing.F) {
	for _, seed := range []string{
		"000000010000000000000001",
		"0000000A000000FF0000001C.gz",
		"000000010000000000000005-" + testSHA1 + ".zst",
		"000000010000000000000005.partial-" + testSHA1 + ".gz",
		"000000010000000000000005.00000028.backup",
		"00000002.history",
		"00000002.history.lz4",
		"00000001000000000000000G",
		"000000010000000000000001.gz.tmp",
		"0000000a0000000000000001",
		"",
		"foo",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		file, err := ParseFileName(name)
		if file.Name != name {
			t.Fatalf("Name = %q, want %q", file.Name, name)
		}
		if (err != nil) != (file.Kind == KindUnknown) {
			t.Fatalf("ParseFileName(%q) = kind %s, error %v", name, file.Kind, err)
		}
		if err == nil {
			if got := rebuildName(file); got != name {
				t.Fatalf("ParseFileName(%q) does not round-trip: rebuilt %q from %+v", name, got, file)
			}
		}
		if file.Kind == KindSegment {
			seg, err := ParseSegmentName(name[:segmentNameLen])
			if err != nil || seg != file.Segment || seg.String() != name[:segmentNameLen] {
				t.Fatalf("segment of %q: %v, %v", name, seg, err)
			}
		}
		if len(name) == segmentNameLen {
			if seg, err := ParseSegmentName(name); err == nil && seg.String() != name {
				t.Fatalf("ParseSegmentName(%q).String() = %q", name, seg.String())
			}
		}
		if b, err := ParseBoundaryName(name); err == nil && !strings.HasPrefix(name, b.String()) {
			t.Fatalf("ParseBoundaryName(%q) = %s, not the name's segment", name, b)
		}
	})
}
