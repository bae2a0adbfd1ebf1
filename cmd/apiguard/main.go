package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// Exit codes.
const (
	exitOK      = 0 // done; for checks: verified
	exitFailure = 1 // an operation failed, or a check refused what it verified
	exitUsage   = 2 // bad flags or arguments
)

// run is main without the process: arguments in, results to stdout,
// errors to stderr, the exit code out. env reads environment variables
// (os.Getenv in main), for secrets named by -…-env flags. Interrupt ends
// a long-running subcommand (token serve).
func run(args []string, stdout, stderr io.Writer, env func(string) string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return (&cli{ctx: ctx, stdout: stdout, stderr: stderr, env: env}).run(args)
}

// cli is one invocation: where output goes, where the environment comes
// from, and the context that ends it.
type cli struct {
	ctx            context.Context
	stdout, stderr io.Writer
	env            func(string) string
}

// command is a subcommand: its path ("token mint"), a one-line summary,
// and its body, which gets the arguments after the path.
type command struct {
	path    string
	summary string
	run     func(c *cli, args []string) int
}

// commands lists the subcommands, in the order help shows them.
func commands() []command {
	return []command{
		{"token keygen", "make a token signing key (ES256, EdDSA or RS256) and its public JWKS", (*cli).tokenKeygen},
		{"token mint", "mint an RFC 9068 access token (typ at+jwt), optionally DPoP-bound", (*cli).tokenMint},
		{"token serve", "serve a JWKS on loopback for a local API", (*cli).tokenServe},
		{"dpop", "make an RFC 9449 DPoP proof for a method and URL", (*cli).dpop},
		{"sign", "RFC 9421-sign a request as a device; print it as curl or send it", (*cli).sign},
		{"jwks check", "fetch a JWKS and say which keys auth would accept", (*cli).jwksCheck},
		{"discover", "fetch an issuer's discovery document, then check its JWKS", (*cli).discover},
		{"attest verify", "verify an App Attest attestation or assertion and print each check", (*cli).attestVerify},
	}
}

func (c *cli) run(args []string) int {
	cmds := commands()
	if len(args) == 0 {
		c.topUsage(c.stderr, cmds)
		return exitUsage
	}
	if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		c.topUsage(c.stdout, cmds)
		return exitOK
	}
	// No command's path is a prefix of another's.
	for _, cmd := range cmds {
		words := strings.Fields(cmd.path)
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			return cmd.run(c, args[len(words):])
		}
	}
	// A group without its subcommand ("apiguard token"): list the group.
	var group []command
	for _, cmd := range cmds {
		if strings.HasPrefix(cmd.path, args[0]+" ") {
			group = append(group, cmd)
		}
	}
	if len(group) > 0 {
		if len(args) > 1 && (args[1] == "-h" || args[1] == "-help" || args[1] == "--help") {
			c.topUsage(c.stdout, group)
			return exitOK
		}
		fmt.Fprintf(c.stderr, "apiguard %s: unknown or missing subcommand\n", args[0])
		c.topUsage(c.stderr, group)
		return exitUsage
	}
	fmt.Fprintf(c.stderr, "apiguard: unknown command %q\n", args[0])
	c.topUsage(c.stderr, cmds)
	return exitUsage
}

func (c *cli) topUsage(w io.Writer, cmds []command) {
	fmt.Fprintln(w, "usage: apiguard <command> [flags]")
	fmt.Fprintln(w)
	for _, cmd := range cmds {
		fmt.Fprintf(w, "  %-14s %s\n", cmd.path, cmd.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run apiguard <command> -h for its flags. Exit codes: 0 ok, 1 failure or refused, 2 usage.")
}

// flagSet is a subcommand's flags with the house help: "usage: apiguard
// <path> <synopsis>", the description, then the flags.
type flagSet struct {
	*flag.FlagSet
	path, synopsis, desc string
	pos                  string // the positional argument, when the command takes one
}

func newFlags(path, synopsis, desc string) *flagSet {
	fs := flag.NewFlagSet("apiguard "+path, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &flagSet{FlagSet: fs, path: path, synopsis: synopsis, desc: desc}
}

func (fs *flagSet) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: apiguard %s %s\n\n%s\n", fs.path, fs.synopsis, strings.TrimSpace(fs.desc))
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nflags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

// parse parses args with nargs (0 or 1) positional arguments; a
// positional argument may come before or after the flags ("jwks check
// URL -alg ES256"). It returns ok false and the exit code when the
// command must stop: 0 after -h (help on stdout), 2 on a usage error (the
// error and the help on stderr).
func (c *cli) parse(fs *flagSet, args []string, nargs int) (ok bool, code int) {
	err := fs.Parse(args)
	if err == nil && nargs == 1 && fs.NArg() >= 1 {
		fs.pos = fs.Arg(0)
		err = fs.Parse(fs.Args()[1:])
		if err == nil && fs.NArg() > 0 {
			err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
	} else if err == nil && fs.NArg() != nargs {
		err = fmt.Errorf("want %d argument(s), got %d", nargs, fs.NArg())
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.usage(c.stdout)
		return false, exitOK
	case err != nil:
		fmt.Fprintf(c.stderr, "apiguard %s: %v\n\n", fs.path, err)
		fs.usage(c.stderr)
		return false, exitUsage
	}
	return true, 0
}

// usageErr reports a usage error found after parsing (a missing required
// flag, a bad combination) and returns exit code 2.
func (c *cli) usageErr(fs *flagSet, format string, a ...any) int {
	fmt.Fprintf(c.stderr, "apiguard %s: %s\n\n", fs.path, fmt.Sprintf(format, a...))
	fs.usage(c.stderr)
	return exitUsage
}

// fail reports an operation's error and returns exit code 1. Errors never
// carry secrets: the readers of secrets name the file or variable, never
// its content.
func (c *cli) fail(path string, err error) int {
	fmt.Fprintf(c.stderr, "apiguard %s: %v\n", path, err)
	return exitFailure
}
