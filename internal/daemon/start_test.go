package daemon

import "testing"

func TestWidestStartWins(t *testing.T) {
	tests := []struct{ a, b, want string }{
		{"", "end", "end"},
		{"end", "resume", "resume"},
		{"resume", "beginning", "beginning"},
		{"beginning", "resume", "beginning"},
		{"resume", "end", "resume"},
	}
	for _, tt := range tests {
		if got := widestStart(tt.a, tt.b); got != tt.want {
			t.Errorf("widestStart(%q, %q) = %q, want %q", tt.a, tt.b, got, tt.want)
		}
	}
}
