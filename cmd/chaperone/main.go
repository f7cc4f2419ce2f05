// Command chaperone is the Chaperone gateway daemon (`chaperone serve`) and its command line.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/chaperone-dev/chaperone/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
