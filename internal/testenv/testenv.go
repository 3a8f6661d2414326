// Package testenv lets tests that need root or a system tool say so: they skip with the
// reason on a developer's machine, and fail instead where LOGBAN_REQUIRE_PRIVILEGED=1
// (as in CI), so no such test silently stops running.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireEnv is the variable that turns a skip into a failure.
const RequireEnv = "LOGBAN_REQUIRE_PRIVILEGED"

// Required reports whether tests must not skip for want of privileges or tools.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Skip skips t with reason, or fails it if skipping is not allowed.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s, and %s=1 forbids skipping", reason, RequireEnv)
	}
	t.Skip(reason)
}

// RequireRoot skips (or fails) t unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root (network namespaces, firewall); run as root or with 'go test -exec sudo'")
	}
}

// RequireTool skips (or fails) t unless the command name is installed, and returns its
// path. pkg is the Debian package that provides it.
func RequireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Skip(t, name+" is not installed (apt-get install "+pkg+")")
	}
	return path
}
