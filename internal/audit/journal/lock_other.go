//go:build !unix

package journal

import (
	"errors"
	"os"
)

// lockDir fails: the journal needs flock(2) to keep a second process out.
func lockDir(string) (*os.File, error) {
	return nil, errors.New("audit journal: not supported on this system (it needs flock); set audit.journal: off")
}

func held(string) (bool, error) { return false, nil }
