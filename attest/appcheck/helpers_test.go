package appcheck

import "time"

var synthNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
