package wal

import (
	"errors"
	"fmt"
	"strings"
)

// Lengths of the fixed parts of WAL file names.
const (
	segmentNameLen  = 24 // TTTTTTTTLLLLLLLLSSSSSSSS
	timelineNameLen = 8
	sha1HexLen      = 40

	partialSuffix = ".partial"
	backupSuffix  = ".backup"
	historySuffix = ".history"
)

// ErrInvalidName is wrapped by every error about a malformed WAL file or segment name.
var ErrInvalidName = errors.New("invalid WAL file name")

// Segment identifies one WAL segment: the three 8-hex-digit fields of its 24-character name.
type Segment struct {
	Timeline uint32
	Log      uint32
	Seg      uint32
}

// ParseSegmentName parses a 24-character WAL segment name. Only upper-case hex is accepted, as
// PostgreSQL writes it and as pg_archivecleanup recognises it.
func ParseSegmentName(s string) (Segment, error) {
	if len(s) != segmentNameLen {
		return Segment{}, fmt.Errorf("segment name %q: %w: want %d hex digits, got %d characters",
			s, ErrInvalidName, segmentNameLen, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isUpperHex(c):
		case c >= 'a' && c <= 'f':
			return Segment{}, fmt.Errorf("segment name %q: %w: lower-case hex digit %q at %d (PostgreSQL writes upper case)",
				s, ErrInvalidName, c, i)
		default:
			return Segment{}, fmt.Errorf("segment name %q: %w: non-hex character %q at %d", s, ErrInvalidName, c, i)
		}
	}
	return Segment{Timeline: hex32(s[0:8]), Log: hex32(s[8:16]), Seg: hex32(s[16:24])}, nil
}

// String returns the 24-character upper-case name of the segment.
func (s Segment) String() string {
	var b [segmentNameLen]byte
	putHex32(b[0:8], s.Timeline)
	putHex32(b[8:16], s.Log)
	putHex32(b[16:24], s.Seg)
	return string(b[:])
}

// Compare orders segments by position, ignoring the timeline, exactly as pg_archivecleanup
// compares the last 16 hex digits of two names: -1 when s is before o, 0 when they name the same
// position (possibly on different timelines), +1 when s is after o.
func (s Segment) Compare(o Segment) int {
	switch {
	case s.Log < o.Log:
		return -1
	case s.Log > o.Log:
		return 1
	case s.Seg < o.Seg:
		return -1
	case s.Seg > o.Seg:
		return 1
	}
	return 0
}

// Less reports whether s is strictly before o, ignoring the timeline.
func (s Segment) Less(o Segment) bool { return s.Compare(o) < 0 }

// DefaultSegmentSize is PostgreSQL's default wal_segment_size (16 MiB).
const DefaultSegmentSize int64 = 16 << 20

// ValidateSegmentSize checks a wal_segment_size in bytes: a power of two between 1 MiB and 1 GiB,
// the range initdb accepts.
func ValidateSegmentSize(segSizeBytes int64) error {
	if segSizeBytes < 1<<20 || segSizeBytes > 1<<30 || segSizeBytes&(segSizeBytes-1) != 0 {
		return fmt.Errorf("wal segment size %d: must be a power of two between 1 MiB and 1 GiB", segSizeBytes)
	}
	return nil
}

// segmentsPerLog is how many segments one log id holds: 0x100000000 / wal_segment_size.
func segmentsPerLog(segSizeBytes int64) (uint64, error) {
	if err := ValidateSegmentSize(segSizeBytes); err != nil {
		return 0, err
	}
	return (uint64(1) << 32) / uint64(segSizeBytes), nil
}

// SegNo returns the segment's number counted from the start of WAL (XLogSegNo), for a given
// wal_segment_size in bytes. It fails when the size is invalid or when the Seg field is out of
// range for that size (for 16 MiB segments Seg runs from 0x00 to 0xFF).
func (s Segment) SegNo(segSizeBytes int64) (uint64, error) {
	per, err := segmentsPerLog(segSizeBytes)
	if err != nil {
		return 0, err
	}
	if uint64(s.Seg) >= per {
		return 0, fmt.Errorf("segment %s: seg field %08X out of range for %d-byte segments (max %08X)",
			s, s.Seg, segSizeBytes, per-1)
	}
	return uint64(s.Log)*per + uint64(s.Seg), nil
}

// SegmentFromSegNo builds the segment of a timeline at a segment number (XLogFileName).
func SegmentFromSegNo(timeline uint32, segNo uint64, segSizeBytes int64) (Segment, error) {
	per, err := segmentsPerLog(segSizeBytes)
	if err != nil {
		return Segment{}, err
	}
	log := segNo / per
	if log > 0xFFFFFFFF {
		return Segment{}, fmt.Errorf("segment number %d: beyond the last log id for %d-byte segments", segNo, segSizeBytes)
	}
	return Segment{Timeline: timeline, Log: uint32(log), Seg: uint32(segNo % per)}, nil
}

// ErrInvalidLSN is wrapped by every error about a malformed WAL position.
var ErrInvalidLSN = errors.New("invalid LSN")

// LSN is a WAL position, PostgreSQL's XLogRecPtr: a byte offset from the start of WAL,
// independent of timelines, which is why positions on different timelines compare directly.
type LSN uint64

// maxLSNComponent is the most hex digits pg_lsn accepts on either side of the "/".
const maxLSNComponent = 8

// ParseLSN parses the text form of a pg_lsn ("16/B374D848"): two hex numbers of 1 to 8 digits
// separated by "/", nothing else. Like pg_lsn's input function it reads either case.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok || !isLSNComponent(hi) || !isLSNComponent(lo) {
		return 0, fmt.Errorf("LSN %q: %w: want two hex numbers of 1 to %d digits separated by '/', as in 16/B374D848",
			s, ErrInvalidLSN, maxLSNComponent)
	}
	return LSN(uint64(hexAny32(hi))<<32 | uint64(hexAny32(lo))), nil
}

// String formats the LSN as PostgreSQL prints a pg_lsn: upper-case hex without leading zeros.
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l)) }

// SegmentOf returns the segment that holds position lsn on a timeline for a wal_segment_size in
// bytes: XLByteToSeg then XLogFileName, the way pg_control_checkpoint() derives redo_wal_file
// from redo_lsn and timeline_id (pg_walfile_name differs: it names the previous segment for a
// position on a segment boundary).
func SegmentOf(timeline uint32, lsn LSN, segSizeBytes int64) (Segment, error) {
	if timeline == 0 {
		return Segment{}, fmt.Errorf("segment of %s: timeline 0 does not exist (timelines start at 1)", lsn)
	}
	if err := ValidateSegmentSize(segSizeBytes); err != nil {
		return Segment{}, fmt.Errorf("segment of %s: %w", lsn, err)
	}
	return SegmentFromSegNo(timeline, uint64(lsn)/uint64(segSizeBytes), segSizeBytes)
}

func isLSNComponent(s string) bool {
	if s == "" || len(s) > maxLSNComponent {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isUpperHex(c) && !(c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// hexAny32 converts at most 8 hex digits of either case already checked by the caller.
func hexAny32(s string) uint32 {
	var v uint32
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c <= '9':
			v = v<<4 | uint32(c-'0')
		case c >= 'a':
			v = v<<4 | uint32(c-'a'+10)
		default:
			v = v<<4 | uint32(c-'A'+10)
		}
	}
	return v
}

// FileKind says what an archived file is.
type FileKind int

// The kinds of archived files.
const (
	// KindUnknown is anything that is not exactly one of the recognised forms: kept and counted.
	KindUnknown FileKind = iota
	// KindSegment is a complete WAL segment, <24 hex>.
	KindSegment
	// KindPartial is a partial segment archived at a promotion, <24 hex>.partial.
	KindPartial
	// KindBackup is a backup history file (backup-start marker), <24 hex>.<8 hex>.backup.
	KindBackup
	// KindHistory is a timeline history file, <8 hex>.history: never deleted.
	KindHistory
	// KindMetadata is archive metadata such as pgBackRest's archive.info: never deleted.
	KindMetadata
)

// String returns the kind's lower-case name.
func (k FileKind) String() string {
	switch k {
	case KindSegment:
		return "segment"
	case KindPartial:
		return "partial"
	case KindBackup:
		return "backup"
	case KindHistory:
		return "history"
	case KindMetadata:
		return "metadata"
	}
	return "unknown"
}

// Compression extensions recognised after a WAL file name. gz, bz2, lz4 and zst are pgBackRest's
// (and xz for completeness); lz4, lzma, zst and br are WAL-G's.
var compressions = []string{"gz", "bz2", "lz4", "zst", "xz", "lzma", "br"}

// File is a parsed archived WAL file name.
type File struct {
	// Name is the file name as stored (the last element of the key), with any suffixes.
	Name string
	Kind FileKind
	// Segment is the segment of a segment, partial or backup file; for a history file only
	// Timeline is set.
	Segment Segment
	// BackupOffset is the start offset inside the segment of a backup history file.
	BackupOffset uint32
	// Compression is the compression extension without its dot ("" when not compressed).
	Compression string
	// SHA1 is pgBackRest's "-<40 hex>" checksum suffix without the dash ("" when absent).
	SHA1 string
}

// nameRules says which suffixes a layout allows around the base name.
type nameRules struct {
	sha1        bool // a "-<sha1>" suffix may follow the base name
	compression bool // a compression extension may end the name
}

// ParseFileName parses an archived WAL file name of any of the recognised forms:
//
//	<24 hex>                  segment
//	<24 hex>.partial          partial segment
//	<24 hex>.<8 hex>.backup   backup history file
//	<8 hex>.history           timeline history file
//
// each optionally followed by pgBackRest's "-<40 lower-case hex sha1>" and then by one
// compression extension (.gz, .bz2, .lz4, .zst, .xz, .lzma, .br). Hex digits of the names must be
// upper case. A name of no such form returns a File of KindUnknown and an error wrapping
// ErrInvalidName.
func ParseFileName(name string) (File, error) {
	return parseFileName(name, nameRules{sha1: true, compression: true})
}

func parseFileName(name string, rules nameRules) (File, error) {
	f := File{Name: name, Kind: KindUnknown}
	rest := name
	if rules.compression {
		if i := strings.LastIndexByte(rest, '.'); i > 0 {
			ext := rest[i+1:]
			for _, c := range compressions {
				if ext == c {
					f.Compression = c
					rest = rest[:i]
					break
				}
			}
		}
	}
	if rules.sha1 && len(rest) > sha1HexLen+1 && rest[len(rest)-sha1HexLen-1] == '-' {
		sum := rest[len(rest)-sha1HexLen:]
		if allLowerHex(sum) {
			f.SHA1 = sum
			rest = rest[:len(rest)-sha1HexLen-1]
		}
	}
	kind, seg, offset, err := parseBase(rest)
	if err != nil {
		return File{Name: name, Kind: KindUnknown}, fmt.Errorf("file name %q: %w", name, err)
	}
	f.Kind, f.Segment, f.BackupOffset = kind, seg, offset
	return f, nil
}

// parseBase parses a name without checksum or compression suffix.
func parseBase(s string) (FileKind, Segment, uint32, error) {
	switch {
	case len(s) == segmentNameLen:
		seg, err := ParseSegmentName(s)
		if err != nil {
			return KindUnknown, Segment{}, 0, err
		}
		return KindSegment, seg, 0, nil
	case len(s) == segmentNameLen+len(partialSuffix) && strings.HasSuffix(s, partialSuffix):
		seg, err := ParseSegmentName(s[:segmentNameLen])
		if err != nil {
			return KindUnknown, Segment{}, 0, err
		}
		return KindPartial, seg, 0, nil
	case len(s) == segmentNameLen+1+8+len(backupSuffix) && s[segmentNameLen] == '.' && strings.HasSuffix(s, backupSuffix):
		seg, err := ParseSegmentName(s[:segmentNameLen])
		if err != nil {
			return KindUnknown, Segment{}, 0, err
		}
		off := s[segmentNameLen+1 : segmentNameLen+9]
		if !allUpperHex(off) {
			return KindUnknown, Segment{}, 0, fmt.Errorf("%w: backup offset %q is not 8 upper-case hex digits", ErrInvalidName, off)
		}
		return KindBackup, seg, hex32(off), nil
	case len(s) == timelineNameLen+len(historySuffix) && strings.HasSuffix(s, historySuffix):
		tli := s[:timelineNameLen]
		if !allUpperHex(tli) {
			return KindUnknown, Segment{}, 0, fmt.Errorf("%w: timeline %q is not 8 upper-case hex digits", ErrInvalidName, tli)
		}
		return KindHistory, Segment{Timeline: hex32(tli)}, 0, nil
	}
	return KindUnknown, Segment{}, 0, fmt.Errorf("%w: not a segment, .partial, .backup or .history name", ErrInvalidName)
}

// ParseBoundaryName parses the name of the oldest WAL file to keep, as pg_archivecleanup accepts
// its restart file argument: a segment name, or a .partial or .backup file name, which is
// trimmed to its segment (000000010000000000000010.00000020.backup keeps
// 000000010000000000000010 and later). Like pg_archivecleanup without -x, a name with a checksum
// or compression suffix is refused. pg_archivecleanup also accepts loosely formed .backup names
// (it reads them with sscanf); only the exact form is accepted here.
func ParseBoundaryName(name string) (Segment, error) {
	f, err := parseFileName(name, nameRules{})
	if err != nil {
		return Segment{}, fmt.Errorf("boundary: %w", err)
	}
	switch f.Kind {
	case KindSegment, KindPartial, KindBackup:
		return f.Segment, nil
	}
	return Segment{}, fmt.Errorf("boundary: file name %q: %w: a %s file does not name a WAL position",
		name, ErrInvalidName, f.Kind)
}

func isUpperHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }

func allUpperHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isUpperHex(s[i]) {
			return false
		}
	}
	return true
}

func allLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// hex32 converts 8 upper-case hex digits already checked by the caller.
func hex32(s string) uint32 {
	var v uint32
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= '9' {
			v = v<<4 | uint32(c-'0')
		} else {
			v = v<<4 | uint32(c-'A'+10)
		}
	}
	return v
}

const upperHexDigits = "0123456789ABCDEF"

func putHex32(b []byte, v uint32) {
	for i := 7; i >= 0; i-- {
		b[i] = upperHexDigits[v&0xF]
		v >>= 4
	}
}
