package wal

import (
	"fmt"
	"sort"
	"strings"
)

// Layout kinds accepted by NewLayout.
const (
	LayoutPgBackRest = "pgbackrest"
	LayoutWALG       = "wal-g"
	LayoutPlain      = "plain"
)

// walgWALDir is the directory WAL-G stores WAL in under its prefix.
const walgWALDir = "wal_005"

// pgBackRest archive metadata, kept beside the archive-id directories.
const (
	pgbrArchiveInfo     = "archive.info"
	pgbrArchiveInfoCopy = "archive.info.copy"
)

// ListRequest is one ListObjectsV2 listing the S3 adapter runs: a prefix, a delimiter ("/" to
// get CommonPrefixes, "" for everything under the prefix) and an optional StartAfter key.
type ListRequest struct {
	Prefix     string
	Delimiter  string
	StartAfter string
}

// Layout maps the object keys of one archive to WAL files and tells the S3 adapter which keys to
// list so that it never lists past the boundary. Collect drives a Layout through a Lister; an
// adapter that lists by itself follows the same protocol:
//
//  1. run every request of Roots;
//  2. for the CommonPrefixes one request returned, run the requests PrefixesToList returns;
//  3. while reading keys in listing order, once StopAfter reports true for a key, keep that key
//     but read no further in that request (no further pages); if ResumeAfter then returns a key,
//     continue with a new request of the same prefix and delimiter starting after it.
type Layout interface {
	// Kind returns the layout kind (LayoutPgBackRest, LayoutWALG or LayoutPlain).
	Kind() string
	// Parse turns an object key into a File. ok is false when the key is not part of this
	// archive (outside its prefix, another stanza, a sub-directory of a plain prefix); keys of
	// the archive that match no known form come back as KindUnknown.
	Parse(key string) (f File, ok bool)
	// Roots returns the listings to start with.
	Roots() []ListRequest
	// PrefixesToList picks, in key order, the CommonPrefixes of a delimited listing that may
	// hold files before the boundary, and says how to list each of them.
	PrefixesToList(commonPrefixes []string, boundary Segment) []ListRequest
	// StopAfter reports whether key is a complete WAL segment at or past the boundary: no key
	// listed after it in the same request can be deleted, and it shows NewPlan that the
	// boundary is archived. A .backup or .partial file at or past the boundary does not stop
	// the listing, which goes on to the first complete segment: such a file proves nothing
	// archived (in a flat archive X.00000028.backup.gz sorts before X.gz, and a .partial may
	// end its timeline), and stopping there left NewPlan refusing with ErrBoundaryAhead run
	// after run.
	StopAfter(key string, boundary Segment) bool
	// ResumeAfter returns, for a key StopAfter stopped at, the StartAfter of the next request
	// of the same prefix that may still hold deletable keys (the next timeline of a flat
	// archive), or false when the request is finished.
	ResumeAfter(key string) (startAfter string, ok bool)
}

// LayoutOptions configures NewLayout. Each kind uses only its own fields and rejects the others.
type LayoutOptions struct {
	// RepoPath is pgBackRest's repo1-path ("/wal-archive/main"; "" or "/" for the bucket root).
	RepoPath string
	// Stanza is the pgBackRest stanza name.
	Stanza string
	// ArchiveID optionally restricts a pgBackRest layout to one archive-id directory
	// ("15-1"); by default every <pg version>-<history id> directory of the stanza is pruned.
	ArchiveID string
	// Prefix is the key prefix of a WAL-G archive (WALG_S3_PREFIX without s3://bucket, "" for
	// the bucket root) or of a plain archive, where it is used verbatim
	// ("confluence/local-db-wal-").
	Prefix string
	// Extension is the extension a plain archive_command appends (".bz2"), pg_archivecleanup's
	// -x; "" for uncompressed files.
	Extension string
}

// NewLayout builds a layout of the given kind ("pgbackrest", "wal-g" or "plain") after checking
// its options.
func NewLayout(kind string, opts LayoutOptions) (Layout, error) {
	switch strings.ToLower(kind) {
	case LayoutPgBackRest:
		return newPgBackRest(opts)
	case LayoutWALG, "walg":
		return newWALG(opts)
	case LayoutPlain:
		return newPlain(opts)
	}
	return nil, fmt.Errorf("wal layout %q: unknown kind, want %q, %q or %q", kind, LayoutPgBackRest, LayoutWALG, LayoutPlain)
}

func rejectOptions(kind string, fields map[string]string) error {
	names := make([]string, 0, len(fields))
	for name, v := range fields {
		if v != "" {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	return fmt.Errorf("wal layout %s: option(s) %s do not apply to this layout", kind, strings.Join(names, ", "))
}

// checkKeyPart rejects characters and shapes that cannot be part of a sane key prefix.
func checkKeyPart(what, s string) error {
	if strings.Contains(s, "://") {
		return fmt.Errorf("%s %q: give the key prefix inside the bucket, not a URL", what, s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7F {
			return fmt.Errorf("%s %q: control character at %d", what, s, i)
		}
	}
	if strings.Contains(s, "//") {
		return fmt.Errorf("%s %q: empty path element (//)", what, s)
	}
	for _, el := range strings.Split(s, "/") {
		if el == "." || el == ".." {
			return fmt.Errorf("%s %q: relative path element %q", what, s, el)
		}
	}
	return nil
}

// splitPath splits a key into its first len(parts) "/"-separated elements without allocating and
// returns how many elements the key has, len(parts)+1 when it has more than fit.
func splitPath(key string, parts []string) int {
	n := 0
	for {
		i := strings.IndexByte(key, '/')
		if n == len(parts) {
			return n + 1
		}
		if i < 0 {
			parts[n] = key
			return n + 1
		}
		parts[n] = key[:i]
		key = key[i+1:]
		n++
	}
}

// trimSlashes turns a path into a key prefix without leading or trailing slash.
func trimSlashes(s string) string { return strings.Trim(s, "/") }

func isStanzaName(s string) bool {
	if s == "" || s[0] == '.' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// isArchiveID matches pgBackRest's <pg version>-<history id> directory names: 15-1, 9.6-2.
func isArchiveID(s string) bool {
	dash := strings.IndexByte(s, '-')
	if dash <= 0 || dash == len(s)-1 || !allDigits(s[dash+1:]) {
		return false
	}
	ver := s[:dash]
	if dot := strings.IndexByte(ver, '.'); dot >= 0 {
		return dot > 0 && dot < len(ver)-1 && allDigits(ver[:dot]) && allDigits(ver[dot+1:])
	}
	return allDigits(ver)
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// pgBackRest stores WAL under <repo>/archive/<stanza>/<pg version>-<history id>/: segments and
// partials as <16 hex>/<name>-<sha1>[.ext], backup history files as <16 hex>/<name> (no
// checksum, never compressed), timeline history files as <tli>.history directly in the archive-id
// directory, and archive.info and archive.info.copy in the stanza directory.
type pgBackRest struct {
	root      string // "<repo>/archive/<stanza>/"
	archiveID string
}

func newPgBackRest(o LayoutOptions) (*pgBackRest, error) {
	if err := rejectOptions(LayoutPgBackRest, map[string]string{"prefix": o.Prefix, "extension": o.Extension}); err != nil {
		return nil, err
	}
	if err := checkKeyPart("wal layout pgbackrest: repo path", o.RepoPath); err != nil {
		return nil, err
	}
	if !isStanzaName(o.Stanza) {
		if o.Stanza == "" {
			return nil, fmt.Errorf("wal layout pgbackrest: stanza is required")
		}
		return nil, fmt.Errorf("wal layout pgbackrest: stanza %q: use letters, digits, '_', '-' and '.', not starting with '.' or '-'", o.Stanza)
	}
	if o.ArchiveID != "" && !isArchiveID(o.ArchiveID) {
		return nil, fmt.Errorf("wal layout pgbackrest: archive id %q: want <pg version>-<history id>, e.g. 15-1", o.ArchiveID)
	}
	root := "archive/" + o.Stanza + "/"
	if repo := trimSlashes(o.RepoPath); repo != "" {
		root = repo + "/" + root
	}
	return &pgBackRest{root: root, archiveID: o.ArchiveID}, nil
}

func (l *pgBackRest) Kind() string { return LayoutPgBackRest }

func (l *pgBackRest) Roots() []ListRequest {
	return []ListRequest{{Prefix: l.root, Delimiter: "/"}}
}

func (l *pgBackRest) Parse(key string) (File, bool) {
	if !strings.HasPrefix(key, l.root) {
		return File{}, false
	}
	rest := key[len(l.root):]
	if rest == pgbrArchiveInfo || rest == pgbrArchiveInfoCopy {
		return File{Name: rest, Kind: KindMetadata}, true
	}
	var parts [3]string
	n := splitPath(rest, parts[:])
	if n >= 2 && l.archiveID != "" && parts[0] != l.archiveID {
		return File{}, false
	}
	name := rest[strings.LastIndexByte(rest, '/')+1:]
	unknown := File{Name: name, Kind: KindUnknown}
	if n < 2 || n > 3 || !isArchiveID(parts[0]) {
		return unknown, true
	}
	if n == 2 {
		f, err := parseFileName(name, nameRules{})
		if err != nil || f.Kind != KindHistory {
			return unknown, true
		}
		return f, true
	}
	dir := parts[1]
	if len(dir) != 16 || !allUpperHex(dir) || !strings.HasPrefix(name, dir) {
		return unknown, true
	}
	f, err := parseFileName(name, nameRules{sha1: true, compression: true})
	if err != nil {
		return unknown, true
	}
	switch f.Kind {
	case KindSegment, KindPartial:
		if f.SHA1 == "" {
			return unknown, true
		}
	case KindBackup:
		if f.SHA1 != "" || f.Compression != "" {
			return unknown, true
		}
	default:
		return unknown, true
	}
	return f, true
}

func (l *pgBackRest) PrefixesToList(commonPrefixes []string, boundary Segment) []ListRequest {
	cps := append([]string(nil), commonPrefixes...)
	sort.Strings(cps)
	var out []ListRequest
	for _, cp := range cps {
		if !strings.HasPrefix(cp, l.root) || !strings.HasSuffix(cp, "/") {
			continue
		}
		parts := strings.Split(cp[len(l.root):len(cp)-1], "/")
		if !isArchiveID(parts[0]) || (l.archiveID != "" && parts[0] != l.archiveID) {
			continue
		}
		switch len(parts) {
		case 1:
			out = append(out, ListRequest{Prefix: cp, Delimiter: "/"})
		case 2:
			// A 16-hex directory holds one timeline and one log id. Timelines are ignored, so
			// every directory whose log id is not after the boundary's may hold deletable files,
			// whatever its timeline; the boundary's own log id is listed up to the boundary.
			dir := parts[1]
			if len(dir) == 16 && allUpperHex(dir) && hex32(dir[8:]) <= boundary.Log {
				out = append(out, ListRequest{Prefix: cp})
			}
		}
	}
	return out
}

func (l *pgBackRest) StopAfter(key string, boundary Segment) bool {
	return segmentAtOrPast(l, key, boundary)
}

// ResumeAfter is always false: a 16-hex directory holds a single timeline.
func (l *pgBackRest) ResumeAfter(string) (string, bool) { return "", false }

// segmentAtOrPast reports whether key is a complete segment at or after the boundary position.
// Within one listing (a pgBackRest directory, a flat archive's timeline) every key after it is
// at or past the boundary too, so nothing after it can be deleted.
func segmentAtOrPast(l Layout, key string, boundary Segment) bool {
	f, ok := l.Parse(key)
	return ok && f.Kind == KindSegment && f.Segment.Compare(boundary) >= 0
}

// flat is an archive whose files all sit right under one key prefix, in key order timeline by
// timeline: WAL-G's <prefix>/wal_005/ and a plain archive_command prefix.
type flat struct {
	kind  string
	root  string
	ext   string // plain: the one extension pg_archivecleanup -x would trim
	rules nameRules
}

func newWALG(o LayoutOptions) (*flat, error) {
	if err := rejectOptions(LayoutWALG, map[string]string{
		"repo path": o.RepoPath, "stanza": o.Stanza, "archive id": o.ArchiveID, "extension": o.Extension,
	}); err != nil {
		return nil, err
	}
	if err := checkKeyPart("wal layout wal-g: prefix", o.Prefix); err != nil {
		return nil, err
	}
	root := walgWALDir + "/"
	if p := trimSlashes(o.Prefix); p != "" {
		root = p + "/" + root
	}
	return &flat{kind: LayoutWALG, root: root, rules: nameRules{compression: true}}, nil
}

func newPlain(o LayoutOptions) (*flat, error) {
	if err := rejectOptions(LayoutPlain, map[string]string{
		"repo path": o.RepoPath, "stanza": o.Stanza, "archive id": o.ArchiveID,
	}); err != nil {
		return nil, err
	}
	if err := checkKeyPart("wal layout plain: prefix", o.Prefix); err != nil {
		return nil, err
	}
	if strings.HasPrefix(o.Prefix, "/") {
		return nil, fmt.Errorf("wal layout plain: prefix %q: S3 keys written by archive_command do not start with '/'", o.Prefix)
	}
	if o.Extension != "" {
		if !strings.HasPrefix(o.Extension, ".") || len(o.Extension) < 2 {
			return nil, fmt.Errorf("wal layout plain: extension %q: must start with '.', as in %q", o.Extension, "."+strings.TrimPrefix(o.Extension, "."))
		}
		for i := 1; i < len(o.Extension); i++ {
			c := o.Extension[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return nil, fmt.Errorf("wal layout plain: extension %q: character %q not allowed", o.Extension, c)
			}
		}
	}
	return &flat{kind: LayoutPlain, root: o.Prefix, ext: o.Extension}, nil
}

func (l *flat) Kind() string { return l.kind }

func (l *flat) Roots() []ListRequest {
	return []ListRequest{{Prefix: l.root, Delimiter: "/"}}
}

func (l *flat) Parse(key string) (File, bool) {
	if !strings.HasPrefix(key, l.root) {
		return File{}, false
	}
	name := key[len(l.root):]
	if name == "" || strings.Contains(name, "/") {
		return File{}, false
	}
	if l.kind == LayoutWALG {
		f, err := parseFileName(name, l.rules)
		if err != nil {
			return File{Name: name, Kind: KindUnknown}, true
		}
		return f, true
	}
	// Plain: exactly pg_archivecleanup's TrimExtension, then its name tests.
	base := name
	if l.ext != "" && len(base) > len(l.ext) && strings.HasSuffix(base, l.ext) {
		base = base[:len(base)-len(l.ext)]
	}
	f, err := parseFileName(base, nameRules{})
	if err != nil {
		return File{Name: name, Kind: KindUnknown}, true
	}
	f.Name = name
	if base != name {
		ext := l.ext[1:]
		for _, c := range compressions {
			if ext == c {
				f.Compression = c
			}
		}
	}
	return f, true
}

// PrefixesToList returns nothing: pg_archivecleanup does not descend into sub-directories, and
// neither does a flat archive.
func (l *flat) PrefixesToList([]string, Segment) []ListRequest { return nil }

func (l *flat) StopAfter(key string, boundary Segment) bool {
	return segmentAtOrPast(l, key, boundary)
}

// ResumeAfter skips the rest of key's timeline: every later key of that timeline is at or past
// the boundary, but the next timeline starts again from its own first segment.
func (l *flat) ResumeAfter(key string) (string, bool) {
	f, ok := l.Parse(key)
	if !ok || f.Kind == KindUnknown || f.Kind == KindMetadata || f.Segment.Timeline == 0xFFFFFFFF {
		return "", false
	}
	var b [timelineNameLen]byte
	putHex32(b[:], f.Segment.Timeline+1)
	return l.root + string(b[:]), true
}

// Overlap reports whether two archives can hold a common key, so that the pruner of one could
// delete the other's WAL with its own boundary. A pgBackRest archive owns every key under
// <repo>/archive/<stanza>/; a flat one (WAL-G, plain) owns only the keys right under its root,
// with no further "/", since it never lists deeper: a plain archive at the bucket root and a
// pgBackRest repository in a directory of the same bucket do not overlap, two plain prefixes
// one of which extends the other inside a file name ("wal/" and "wal/db1-") do. A Layout
// implementation from outside this package is taken to overlap everything.
func Overlap(a, b Layout) bool {
	ra, fa, oka := keySpace(a)
	rb, fb, okb := keySpace(b)
	if !oka || !okb {
		return true
	}
	switch {
	case !fa && !fb:
		return strings.HasPrefix(ra, rb) || strings.HasPrefix(rb, ra)
	case !fa: // a owns a whole subtree, b one level
		return strings.HasPrefix(rb, ra)
	case !fb:
		return strings.HasPrefix(ra, rb)
	}
	short, long := ra, rb
	if len(short) > len(long) {
		short, long = long, short
	}
	return strings.HasPrefix(long, short) && !strings.Contains(long[len(short):], "/")
}

// keySpace returns the root of a layout's keys and whether it is flat (keys right under the root
// only) rather than a whole subtree.
func keySpace(l Layout) (root string, flatRoot bool, ok bool) {
	switch l := l.(type) {
	case *pgBackRest:
		return l.root, false, true
	case *flat:
		return l.root, true, true
	}
	return "", false, false
}
