package wal

import (
	"context"
	"fmt"
)

// ObjectInfo is one archived object: its key and size in bytes.
type ObjectInfo struct {
	Key  string
	Size int64
}

// Page is one page of a ListObjectsV2 answer.
type Page struct {
	Objects        []ObjectInfo
	CommonPrefixes []string
	// NextToken is the continuation token of the next page, "" after the last page.
	NextToken string
}

// Lister is the single storage operation Collect needs: one page of ListObjectsV2 for a request
// (token is "" for the first page).
type Lister interface {
	ListPage(ctx context.Context, req ListRequest, token string) (Page, error)
}

// maxListRequests bounds the number of listings one Collect runs, as a guard against a layout or
// lister that never converges.
const maxListRequests = 1 << 20

// Collect lists the objects of an archive the way the layout prescribes and returns the ones
// the planner has to see: every object before the boundary, plus, in each listing that reached
// it, what lies between the boundary and the first complete segment at or past it, that segment
// included (it tells NewPlan the boundary is archived; a .backup or .partial file does not).
// Objects past that segment are not listed.
func Collect(ctx context.Context, lister Lister, layout Layout, boundary Segment) ([]ObjectInfo, error) {
	if lister == nil || layout == nil {
		return nil, fmt.Errorf("collect wal objects: lister and layout are required")
	}
	queue := append([]ListRequest(nil), layout.Roots()...)
	var out []ObjectInfo
	for n := 0; len(queue) > 0; n++ {
		if n >= maxListRequests {
			return nil, fmt.Errorf("collect wal objects: more than %d listings, giving up", maxListRequests)
		}
		req := queue[0]
		queue = queue[1:]
		var prefixes []string
		var resume *ListRequest
		token := ""
	pages:
		for {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("collect wal objects under %q: %w", req.Prefix, err)
			}
			page, err := lister.ListPage(ctx, req, token)
			if err != nil {
				return nil, fmt.Errorf("list %q: %w", req.Prefix, err)
			}
			prefixes = append(prefixes, page.CommonPrefixes...)
			for _, o := range page.Objects {
				out = append(out, o)
				if !layout.StopAfter(o.Key, boundary) {
					continue
				}
				if next, ok := layout.ResumeAfter(o.Key); ok {
					if next <= o.Key || next <= req.StartAfter {
						return nil, fmt.Errorf("collect wal objects: layout %s resumes at %q, not after %q", layout.Kind(), next, o.Key)
					}
					resume = &ListRequest{Prefix: req.Prefix, Delimiter: req.Delimiter, StartAfter: next}
				}
				break pages
			}
			if page.NextToken == "" {
				break
			}
			if page.NextToken == token {
				return nil, fmt.Errorf("list %q: continuation token %q repeated", req.Prefix, token)
			}
			token = page.NextToken
		}
		// Depth first, in key order: the sub-listings of this request, then its continuation,
		// then the requests already queued.
		next := layout.PrefixesToList(prefixes, boundary)
		if resume != nil {
			next = append(next, *resume)
		}
		queue = append(next, queue...)
	}
	return out, nil
}
