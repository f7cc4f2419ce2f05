package cli

import (
	"errors"
	"sync/atomic"
)

// parseOnly, when set, stops every command right after it has parsed its command line:
// parse returns errParseOnly instead of nil and Run maps it to exit status 0, so nothing
// is read, written, listened on or called. It exists for the test that checks the command
// lines of the documentation (docs_test.go) and is set by nothing else. A test that sets
// it must not run in parallel with the package's other tests, which it would stop too.
var parseOnly atomic.Bool

// errParseOnly is what parse returns in parse-only mode once a command line has parsed:
// its flags, their values and the number of positional arguments are all acceptable.
var errParseOnly = errors.New("command line parsed; not run (parse-only mode)")
