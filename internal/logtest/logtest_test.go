package logtest

import (
	"strings"
	"sync"
	"testing"
)

func TestLoggerWritesDebugAsJSON(t *testing.T) {
	log, buf := New()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { log.Debug("fetched", "upstream", "crm") })
	}
	wg.Wait()
	if got := strings.Count(buf.String(), `"msg":"fetched","upstream":"crm"`); got != 8 {
		t.Errorf("buffer holds %d records, want 8:\n%s", got, buf.String())
	}
}
