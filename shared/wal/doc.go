// Package wal holds the pure logic of WAL archive pruning: PostgreSQL WAL file names, the object
// key layouts of the archives pgfleet prunes (pgBackRest, WAL-G, a plain archive_command prefix),
// the listing plan that keeps an S3 listing from going past the boundary, and the planner that
// decides which archived objects no retained snapshot set needs.
//
// The deletion rule is the one of pg_archivecleanup from PostgreSQL 15
// (src/bin/pg_archivecleanup/pg_archivecleanup.c):
//
//   - only WAL segment names (24 upper-case hex digits) and partial segment names
//     (<24 hex>.partial) are candidates; the timeline (first 8 hex digits) is ignored and a
//     candidate is deleted when its last 16 hex digits sort strictly before those of the
//     boundary (strcmp(walfile + 8, exclusiveCleanupFileName + 8) < 0), so the .partial of the
//     boundary's own segment is kept;
//   - backup history files (<24 hex>.<8 hex>.backup) are never deleted by the PostgreSQL 15
//     tool; deleting them is the -b option of PostgreSQL 17, available here as
//     Options.CleanBackupHistory;
//   - timeline history files (.history) are never deleted;
//   - a restart name given as a .partial or .backup file name is trimmed to its segment name.
//
// pgfleet is stricter than pg_archivecleanup where the archive is not a plain directory: keys
// that are not exactly one of the layout's file name forms (a pgBackRest segment without its
// sha1 suffix, a segment filed under the wrong 16-hex directory, an unknown compression
// extension...) are reported as unrecognized and kept, never guessed at; archive metadata
// (pgBackRest archive.info and archive.info.copy) and timeline history files are protected; and
// the planner refuses a boundary that lies ahead of every archived segment.
package wal
