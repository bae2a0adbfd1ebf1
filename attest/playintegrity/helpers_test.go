package playintegrity

import (
	"crypto/ecdsa"
	"log/slog"
	"time"

	"github.com/apiguard/apiguard/internal/testkit"
)

// logSink collects log output from concurrent writers.
type logSink = testkit.LogSink

type ecdsaPub = ecdsa.PublicKey

func nopLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

var synthNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
