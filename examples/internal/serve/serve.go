// Package serve runs the example servers: listen, print how to call, stop
// on Ctrl-C.
package serve

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"
)

// Run serves h on addr and prints each hint with %s replaced by the base
// URL, until Ctrl-C.
func Run(addr string, h http.Handler, hints ...string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	fmt.Printf("listening on %s\n", base)
	for _, hint := range hints {
		fmt.Printf("  "+hint+"\n", base)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}
