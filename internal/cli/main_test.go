package cli

import (
	"os"
	"testing"

	"github.com/chaperone-dev/chaperone/internal/chaperonetest"
)

// TestMain lets this test binary serve as a stdio MCP upstream of the tests
// (chaperonetest.StdioUpstream) when it is started as one.
func TestMain(m *testing.M) {
	chaperonetest.ServeStdioIfAsked()
	os.Exit(m.Run())
}
