package version

import "testing"

func TestOf(t *testing.T) {
	if got := Of("1.2.3"); got != "1.2.3" {
		t.Errorf("Of(1.2.3) = %q", got)
	}
	// A test binary carries no version of its own: it is a devel build.
	if got := Of(""); got == "" || got == "dev" {
		t.Errorf("Of(\"\") = %q; want the module's version or devel", got)
	}
}
