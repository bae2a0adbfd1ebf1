//go:build !race

package sfv

// raceEnabled reports a -race build, whose instrumentation allocates.
const raceEnabled = false
