package jails

import (
	"fmt"
	"slices"
	"testing"
)

// An address's lines come back oldest first, the last MaxMatches of them, once.
func TestMatchesKeepTheLastLinesInOrder(t *testing.T) {
	var m matches
	for _, n := range []int{1, MaxMatches, MaxMatches + 2, 3*MaxMatches + 1} {
		var want []string
		for i := range n {
			line := fmt.Sprintf("line %d", i)
			m.add(a1, []byte(line))
			m.add(a2, []byte("another address's"))
			want = append(want, line)
		}
		want = want[max(0, n-MaxMatches):]
		if got := m.take(a1); !slices.Equal(got, want) {
			t.Errorf("after %d lines: %q, want %q", n, got, want)
		}
		if got := m.take(a1); got != nil {
			t.Errorf("taken twice: %q", got)
		}
	}
}
