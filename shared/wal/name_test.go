package wal

import (
	"errors"
	"strings"
	"testing"
)

const testSHA1 = "0123456789abcdef0123456789abcdef01234567"

func TestParseSegmentName(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Segment
		wantErr string
	}{
		{name: "first", in: "000000010000000000000001", want: Segment{Timeline: 1, Log: 0, Seg: 1}},
		{name: "all fields", in: "0000000A000000FF0000001C", want: Segment{Timeline: 0xA, Log: 0xFF, Seg: 0x1C}},
		{name: "max", in: "FFFFFFFFFFFFFFFFFFFFFFFF", want: Segment{Timeline: 0xFFFFFFFF, Log: 0xFFFFFFFF, Seg: 0xFFFFFFFF}},
		{name: "zero", in: "000000000000000000000000", want: Segment{}},
		{name: "lower case", in: "0000000a0000000000000001", wantErr: "lower-case hex"},
		{name: "non hex", in: "00000001000000000000000G", wantErr: "non-hex character 'G'"},
		{name: "too short", in: "00000001000000000000001", wantErr: "got 23 characters"},
		{name: "too long", in: "0000000100000000000000011", wantErr: "got 25 characters"},
		{name: "empty", in: "", wantErr: "got 0 characters"},
		{name: "with extension", in: "000000010000000000000001.gz", wantErr: "want 24 hex digits"},
		{name: "space", in: "00000001 000000000000001", wantErr: "non-hex character ' '"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSegmentName(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidName) {
					t.Fatalf("ParseSegmentName(%q) error = %v, want one containing %q wrapping ErrInvalidName", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSegmentName(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseSegmentName(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if s := got.String(); s != tt.in {
				t.Fatalf("String() = %q, want %q", s, tt.in)
			}
		})
	}
}

func TestSegmentCompare(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		want int
	}{
		{name: "same", a: "000000010000000000000005", b: "000000010000000000000005", want: 0},
		{name: "timeline ignored equal", a: "000000030000000000000005", b: "000000010000000000000005", want: 0},
		{name: "seg before", a: "000000010000000000000004", b: "000000010000000000000005", want: -1},
		{name: "higher timeline still before", a: "000000090000000000000004", b: "000000010000000000000005", want: -1},
		{name: "log wins over seg", a: "0000000100000000000000FF", b: "000000010000000100000000", want: -1},
		{name: "after", a: "000000010000000200000000", b: "0000000200000001000000FF", want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := mustSeg(t, tt.a), mustSeg(t, tt.b)
			if got := a.Compare(b); got != tt.want {
				t.Fatalf("%s.Compare(%s) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
			if got := b.Compare(a); got != -tt.want {
				t.Fatalf("%s.Compare(%s) = %d, want %d", tt.b, tt.a, got, -tt.want)
			}
			if got := a.Less(b); got != (tt.want < 0) {
				t.Fatalf("%s.Less(%s) = %v", tt.a, tt.b, got)
			}
			// The order is pg_archivecleanup's: strcmp of the names without their first 8 characters.
			if got := strings.Compare(tt.a[8:], tt.b[8:]); got != tt.want {
				t.Fatalf("strcmp order %d disagrees with Compare %d", got, tt.want)
			}
		})
	}
}

func TestSegNo(t *testing.T) {
	tests := []struct {
		name    string
		seg     string
		size    int64
		want    uint64
		wantErr string
	}{
		{name: "16MiB first log", seg: "0000000100000000000000FF", size: 16 << 20, want: 0xFF},
		{name: "16MiB second log", seg: "000000010000000100000000", size: 16 << 20, want: 0x100},
		{name: "16MiB seg out of range", seg: "000000010000000000000100", size: 16 << 20, wantErr: "out of range"},
		{name: "1GiB", seg: "000000010000000200000003", size: 1 << 30, want: 2*4 + 3},
		{name: "1GiB out of range", seg: "000000010000000000000004", size: 1 << 30, wantErr: "out of range"},
		{name: "1MiB", seg: "000000010000000100000FFF", size: 1 << 20, want: 0x1000 + 0xFFF},
		{name: "not power of two", seg: "000000010000000000000001", size: 3 << 20, wantErr: "power of two"},
		{name: "too small", seg: "000000010000000000000001", size: 1 << 19, wantErr: "power of two"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSeg(t, tt.seg)
			got, err := s.SegNo(tt.size)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("SegNo error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("SegNo = %#x, want %#x", got, tt.want)
			}
			back, err := SegmentFromSegNo(s.Timeline, got, tt.size)
			if err != nil {
				t.Fatal(err)
			}
			if back != s {
				t.Fatalf("SegmentFromSegNo = %s, want %s", back, s)
			}
		})
	}
}

func TestParseFileName(t *testing.T) {
	seg5 := Segment{Timeline: 1, Log: 0, Seg: 5}
	tests := []struct {
		name string
		in   string
		want File // Name is filled in from in
	}{
		{name: "segment", in: "000000010000000000000005", want: File{Kind: KindSegment, Segment: seg5}},
		{name: "segment gz", in: "000000010000000000000005.gz", want: File{Kind: KindSegment, Segment: seg5, Compression: "gz"}},
		{name: "segment bz2", in: "000000010000000000000005.bz2", want: File{Kind: KindSegment, Segment: seg5, Compression: "bz2"}},
		{name: "segment lz4", in: "000000010000000000000005.lz4", want: File{Kind: KindSegment, Segment: seg5, Compression: "lz4"}},
		{name: "segment zst", in: "000000010000000000000005.zst", want: File{Kind: KindSegment, Segment: seg5, Compression: "zst"}},
		{name: "segment xz", in: "000000010000000000000005.xz", want: File{Kind: KindSegment, Segment: seg5, Compression: "xz"}},
		{name: "segment lzma", in: "000000010000000000000005.lzma", want: File{Kind: KindSegment, Segment: seg5, Compression: "lzma"}},
		{name: "segment br", in: "000000010000000000000005.br", want: File{Kind: KindSegment, Segment: seg5, Compression: "br"}},
		{name: "segment sha1", in: "000000010000000000000005-" + testSHA1, want: File{Kind: KindSegment, Segment: seg5, SHA1: testSHA1}},
		{name: "segment sha1 gz", in: "000000010000000000000005-" + testSHA1 + ".gz", want: File{Kind: KindSegment, Segment: seg5, SHA1: testSHA1, Compression: "gz"}},
		{name: "segment sha1 zst", in: "000000010000000000000005-" + testSHA1 + ".zst", want: File{Kind: KindSegment, Segment: seg5, SHA1: testSHA1, Compression: "zst"}},
		{name: "partial", in: "000000010000000000000005.partial", want: File{Kind: KindPartial, Segment: seg5}},
		{name: "partial lz4", in: "000000010000000000000005.partial.lz4", want: File{Kind: KindPartial, Segment: seg5, Compression: "lz4"}},
		{name: "partial sha1 gz", in: "000000010000000000000005.partial-" + testSHA1 + ".gz", want: File{Kind: KindPartial, Segment: seg5, SHA1: testSHA1, Compression: "gz"}},
		{name: "backup", in: "000000010000000000000005.00000028.backup", want: File{Kind: KindBackup, Segment: seg5, BackupOffset: 0x28}},
		{name: "backup br", in: "000000010000000000000005.00000028.backup.br", want: File{Kind: KindBackup, Segment: seg5, BackupOffset: 0x28, Compression: "br"}},
		{name: "backup sha1", in: "000000010000000000000005.00000028.backup-" + testSHA1, want: File{Kind: KindBackup, Segment: seg5, BackupOffset: 0x28, SHA1: testSHA1}},
		{name: "history", in: "00000002.history", want: File{Kind: KindHistory, Segment: Segment{Timeline: 2}}},
		{name: "history lz4", in: "0000000A.history.lz4", want: File{Kind: KindHistory, Segment: Segment{Timeline: 10}, Compression: "lz4"}},
		{name: "history sha1", in: "00000002.history-" + testSHA1, want: File{Kind: KindHistory, Segment: Segment{Timeline: 2}, SHA1: testSHA1}},

		{name: "junk foo", in: "foo", want: File{Kind: KindUnknown}},
		{name: "junk empty", in: "", want: File{Kind: KindUnknown}},
		{name: "junk G", in: "00000001000000000000000G", want: File{Kind: KindUnknown}},
		{name: "junk tmp", in: "000000010000000000000001.gz.tmp", want: File{Kind: KindUnknown}},
		{name: "junk double compression", in: "000000010000000000000001.gz.gz", want: File{Kind: KindUnknown}},
		{name: "junk 23 hex", in: "00000001000000000000001", want: File{Kind: KindUnknown}},
		{name: "junk 25 hex", in: "0000000100000000000000011", want: File{Kind: KindUnknown}},
		{name: "junk lower-case", in: "00000001000000000000000a", want: File{Kind: KindUnknown}},
		{name: "junk lower-case gz", in: "00000001000000000000000a.gz", want: File{Kind: KindUnknown}},
		{name: "junk unknown extension", in: "000000010000000000000001.rar", want: File{Kind: KindUnknown}},
		{name: "junk upper-case extension", in: "000000010000000000000001.GZ", want: File{Kind: KindUnknown}},
		{name: "junk upper-case sha1", in: "000000010000000000000001-" + strings.ToUpper(testSHA1), want: File{Kind: KindUnknown}},
		{name: "junk short sha1", in: "000000010000000000000001-" + testSHA1[:39], want: File{Kind: KindUnknown}},
		{name: "junk compression before sha1", in: "000000010000000000000001.gz-" + testSHA1, want: File{Kind: KindUnknown}},
		{name: "junk backup short offset", in: "000000010000000000000001.28.backup", want: File{Kind: KindUnknown}},
		{name: "junk backup lower offset", in: "000000010000000000000001.0000002a.backup", want: File{Kind: KindUnknown}},
		{name: "junk history 7 hex", in: "0000002.history", want: File{Kind: KindUnknown}},
		{name: "junk history lower", in: "0000000a.history", want: File{Kind: KindUnknown}},
		{name: "junk partial typo", in: "000000010000000000000001.partal", want: File{Kind: KindUnknown}},
		{name: "junk only extension", in: ".gz", want: File{Kind: KindUnknown}},
		{name: "junk archive.info", in: "archive.info", want: File{Kind: KindUnknown}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFileName(tt.in)
			want := tt.want
			want.Name = tt.in
			if got != want {
				t.Fatalf("ParseFileName(%q) = %+v, want %+v", tt.in, got, want)
			}
			if (err != nil) != (want.Kind == KindUnknown) {
				t.Fatalf("ParseFileName(%q) error = %v for kind %s", tt.in, err, got.Kind)
			}
			if err != nil && !errors.Is(err, ErrInvalidName) {
				t.Fatalf("error %v does not wrap ErrInvalidName", err)
			}
		})
	}
}

func TestParseBoundaryName(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{name: "segment", in: "000000020000000100000010", want: "000000020000000100000010"},
		{name: "partial trimmed", in: "000000020000000100000010.partial", want: "000000020000000100000010"},
		{name: "backup trimmed", in: "000000010000000000000010.00000020.backup", want: "000000010000000000000010"},
		{name: "compressed segment", in: "000000010000000000000010.gz", wantErr: "invalid WAL file name"},
		{name: "segment with sha1", in: "000000010000000000000010-" + testSHA1, wantErr: "invalid WAL file name"},
		{name: "loose backup name", in: "000000010000000000000010.20.backup", wantErr: "invalid WAL file name"},
		{name: "history rejected", in: "00000002.history", wantErr: "history file does not name a WAL position"},
		{name: "junk", in: "latest", wantErr: "invalid WAL file name"},
		{name: "lower case", in: "00000001000000000000000a", wantErr: "lower-case"},
		{name: "empty", in: "", wantErr: "invalid WAL file name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseBoundaryName(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseBoundaryName(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tt.want {
				t.Fatalf("ParseBoundaryName(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestFileKindString(t *testing.T) {
	tests := []struct {
		kind FileKind
		want string
	}{
		{KindUnknown, "unknown"}, {KindSegment, "segment"}, {KindPartial, "partial"},
		{KindBackup, "backup"}, {KindHistory, "history"}, {KindMetadata, "metadata"}, {FileKind(99), "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.kind.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func mustSeg(t testing.TB, s string) Segment {
	t.Helper()
	seg, err := ParseSegmentName(s)
	if err != nil {
		t.Fatal(err)
	}
	return seg
}

func TestParseLSN(t *testing.T) {
	tests := []struct {
		in      string
		want    LSN
		wantErr bool
	}{
		{in: "0/5000028", want: 0x5000028},
		{in: "16/B374D848", want: 0x16B374D848},
		{in: "16/b374d848", want: 0x16B374D848}, // pg_lsn reads either case
		{in: "FFFFFFFF/FFFFFFFF", want: 0xFFFFFFFFFFFFFFFF},
		{in: "0/0", want: 0},
		{in: "", wantErr: true},
		{in: "5000028", wantErr: true},
		{in: "/5000028", wantErr: true},
		{in: "0/", wantErr: true},
		{in: "0/5000028/1", wantErr: true},
		{in: "100000000/0", wantErr: true}, // more than 8 hex digits
		{in: "0/X", wantErr: true},
		{in: " 0/5000028", wantErr: true},
		{in: "0x0/5", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLSN(tt.in)
			if tt.wantErr {
				if err == nil || !errors.Is(err, ErrInvalidLSN) {
					t.Fatalf("ParseLSN(%q) = %v, %v; want an error wrapping ErrInvalidLSN", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseLSN(%q) = %#x, %v; want %#x", tt.in, uint64(got), err, uint64(tt.want))
			}
			if back, err := ParseLSN(got.String()); err != nil || back != got {
				t.Fatalf("%q does not round trip through String %q", tt.in, got.String())
			}
		})
	}
	if s := LSN(0x16B374D848).String(); s != "16/B374D848" {
		t.Fatalf("String = %q, want PostgreSQL's form 16/B374D848", s)
	}
}

// TestSegmentOf checks the WAL file name of an LSN the way pg_control_checkpoint() derives
// redo_wal_file (XLByteToSeg, then XLogFileName): not pg_walfile_name's previous-segment rule.
func TestSegmentOf(t *testing.T) {
	tests := []struct {
		name     string
		timeline uint32
		lsn      LSN
		size     int64
		want     string
		wantErr  string
	}{
		{name: "16 MiB", timeline: 1, lsn: 0x5000028, size: 16 << 20, want: "000000010000000000000005"},
		{name: "16 MiB, log id above 0", timeline: 1, lsn: 0x16B374D848, size: 16 << 20, want: "0000000100000016000000B3"},
		{name: "the first byte of a segment is in it", timeline: 3, lsn: 0x6000000, size: 16 << 20, want: "000000030000000000000006"},
		{name: "the last byte of a segment", timeline: 3, lsn: 0x5FFFFFF, size: 16 << 20, want: "000000030000000000000005"},
		{name: "64 MiB", timeline: 2, lsn: 0x16B374D848, size: 64 << 20, want: "00000002000000160000002C"},
		{name: "1 GiB", timeline: 2, lsn: 0x16B374D848, size: 1 << 30, want: "000000020000001600000002"},
		{name: "1 MiB", timeline: 2, lsn: 0x16B374D848, size: 1 << 20, want: "000000020000001600000B37"},
		{name: "the end of WAL", timeline: 0xFFFFFFFF, lsn: 0xFFFFFFFFFFFFFFFF, size: 16 << 20, want: "FFFFFFFFFFFFFFFF000000FF"},
		{name: "timeline 0 does not exist", timeline: 0, lsn: 0x5000028, size: 16 << 20, wantErr: "timeline 0"},
		{name: "bad segment size", timeline: 1, lsn: 0x5000028, size: 3 << 20, wantErr: "power of two"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SegmentOf(tt.timeline, tt.lsn, tt.size)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("SegmentOf = %s, %v; want an error about %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("SegmentOf = %s, %v; want %s", got, err, tt.want)
			}
		})
	}
}
