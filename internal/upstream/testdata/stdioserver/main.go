// Command stdioserver is an MCP server over stdio for the upstream package's tests.
//
// Tools: echo (returns its arguments), env (returns the environment as a JSON object),
// crash (exits the process with status 3), slow (blocks until cancelled), spawn (starts a
// grandchild that sleeps and returns its pid). The tool list is served two per page.
// With -sleep it only sleeps (the grandchild of spawn).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	sleep := flag.Bool("sleep", false, "only sleep, for an hour")
	flag.Parse()
	if *sleep {
		time.Sleep(time.Hour)
		return
	}
	fmt.Fprintln(os.Stderr, "stdioserver: started")
	fmt.Fprintln(os.Stderr, strings.Repeat("x", 5000))

	srv := mcp.NewServer(&mcp.Implementation{Name: "stdioserver", Version: "1"}, &mcp.ServerOptions{PageSize: 2})
	obj := json.RawMessage(`{"type":"object","additionalProperties":true}`)
	text := func(s string) *mcp.CallToolResult {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
	}
	srv.AddTool(&mcp.Tool{Name: "echo", Description: "Echo the arguments.", InputSchema: obj},
		func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return text(string(req.Params.Arguments)), nil
		})
	srv.AddTool(&mcp.Tool{Name: "env", Description: "Return the environment.", InputSchema: obj},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			env := map[string]string{}
			for _, kv := range os.Environ() {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
			b, _ := json.Marshal(env)
			return text(string(b)), nil
		})
	srv.AddTool(&mcp.Tool{Name: "crash", Description: "Exit the process.", InputSchema: obj},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			fmt.Fprintln(os.Stderr, "stdioserver: crashing")
			os.Exit(3)
			return nil, nil
		})
	srv.AddTool(&mcp.Tool{Name: "slow", Description: "Block until cancelled.", InputSchema: obj},
		func(ctx context.Context, _ *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
	srv.AddTool(&mcp.Tool{Name: "spawn", Description: "Start a sleeping grandchild.", InputSchema: obj},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			cmd := exec.Command(os.Args[0], "-sleep")
			if err := cmd.Start(); err != nil {
				return nil, err
			}
			go cmd.Wait()
			return text(strconv.Itoa(cmd.Process.Pid)), nil
		})
	if err := srv.Run(context.Background(), &mcp.StdioTransport{}); err != nil {
		log.Fatal(err)
	}
}
