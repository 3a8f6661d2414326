//go:build race

package main

// raceEnabled reports a build with the race detector, which makes SQLite (pure Go here)
// many times slower; tests size their bursts by it.
const raceEnabled = true
