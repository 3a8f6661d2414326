package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/logban/logban/internal/testenv"
)

// TestServiceStepsAsWritten runs docs/install.md's "From source, as a service" steps as written,
// but for systemctl: the binaries and files are installed under a throwaway root that
// a private mount namespace lays over /usr/local/bin, /etc/logban, /run and /var/lib,
// and a private network namespace keeps the example's actions off the host. Then the
// installed configuration passes -check, ban-server runs with it as the unit starts it,
// and a plain "ban-client status" reaches it on the default socket.
func TestServiceStepsAsWritten(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "unshare", "util-linux")
	readme, err := os.ReadFile("../../docs/install.md")
	if err != nil {
		t.Fatal(err)
	}
	section := regexp.MustCompile("(?s)## From source, as a service\n.*?```sh\n(.*?)```").FindSubmatch(readme)
	if section == nil {
		t.Fatal(`docs/install.md has no "From source, as a service" shell block`)
	}
	var steps []string
	for _, line := range strings.Split(string(section[1]), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "systemctl") && !strings.HasPrefix(line, "ban-client") {
			steps = append(steps, line)
		}
	}
	// Each folder the steps write is laid over by one of the throwaway root's; a folder
	// the host lacks is made for the mount to stand on, and removed after.
	root := t.TempDir()
	script := []string{"set -e"}
	for _, target := range []string{"/usr/local/bin", "/etc/logban", "/etc/systemd/system"} {
		if _, err := os.Stat(target); os.IsNotExist(err) {
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(target) })
		}
		over := filepath.Join(root, strings.ReplaceAll(target, "/", "_"))
		os.MkdirAll(over, 0o755)
		script = append(script, "mount --bind "+over+" "+target)
	}
	script = append(script,
		"mount -t tmpfs tmpfs /run",
		"mount -t tmpfs tmpfs /var/lib",
		"mkdir -p /run/logban /var/lib/logban",
		"cd ../..",
		strings.Join(steps, "\n"),
		// As the unit starts it, then as an operator asks it.
		"/usr/local/bin/ban-server -config /etc/logban/logban.toml 2>"+root+"/ban-server.log &",
		"for i in $(seq 100); do /usr/local/bin/ban-client status >"+root+"/status 2>&1 && break; sleep 0.1; done",
		"cat "+root+"/status; kill %1; wait",
		"ls /etc/logban /usr/local/bin /etc/systemd/system",
	)
	cmd := exec.Command("unshare", "--mount", "--net", "--propagation", "private", "bash", "-c", strings.Join(script, "\n"))
	cmd.Env = append(os.Environ(), "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod")) // the user's own kept (-buildvcs=false)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's steps failed: %v\n%s", err, out)
	}
	for _, want := range []string{
		"warning: server.ignoreip: 192.0.2.20/32 is a documentation address", // -check, as the README says
		"OK, 4 jails",
		"Status\n|- Number of jail:\t4", // ban-client status on the default socket
		"logban.toml", "ban-server", "ban-client", "logban.service",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the README's steps did not show %q:\n%s", want, out)
		}
	}
}
