//go:build race

package treediff

func init() { raceEnabled = true }
