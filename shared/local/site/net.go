package site

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"
)

func waitTCP(ctx context.Context, port int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	wait := 20 * time.Millisecond
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("port %d not listening after %s: %w", port, limit, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 500*time.Millisecond)
	}
}
