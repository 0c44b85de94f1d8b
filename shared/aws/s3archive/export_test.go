package s3archive

import "time"

// PauseForTest exposes the jittered pause before retry n.
func PauseForTest(b Backoff, n int) time.Duration { return b.pause(n) }
