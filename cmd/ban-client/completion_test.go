package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logban/logban/internal/testenv"
)

// The completion scripts load in their shells and complete what a user types: commands,
// flags, and from a real server, jail names and banned addresses.
func TestCompletionScripts(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "ban-client")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	sock := startServer(t)
	if code, _, stderr := client("-socket", sock, "banip", "sasl", "203.0.113.7", "198.51.100.0/24"); code != 0 {
		t.Fatal(stderr)
	}
	env := append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "LOGBAN_SOCKET="+sock)
	script := func(shell string) string {
		code, stdout, stderr := client("completion", shell)
		if code != 0 {
			t.Fatalf("completion %s: exit %d: %s", shell, code, stderr)
		}
		path := filepath.Join(dir, shell)
		os.WriteFile(path, []byte(stdout), 0o644)
		return path
	}

	t.Run("bash", func(t *testing.T) {
		path := script("bash")
		for _, c := range []struct{ words, want string }{
			{"ban-client sta", "status"},
			{"ban-client -j", "-json"},
			{"ban-client banip ''", "sasl"},
			{"ban-client -timeout 5s unbanip 20", "203.0.113.7"},
			{"ban-client unbanip 198", "198.51.100.0/24"}, // a network, as it is unbanned
			{"ban-client completion f", "fish"},
			{"ban-client test-filter zimbra-sub", "zimbra-submission"}, // a filter first, then a file
		} {
			cmd := exec.Command("bash", "-c", `source "$1"; COMP_WORDS=(`+c.words+`); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _ban_client; echo "${COMPREPLY[*]}"`, "bash", path)
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != c.want {
				t.Errorf("bash completes %q to %q (%v); want %q", c.words, out, err, c.want)
			}
		}
	})
	t.Run("zsh", func(t *testing.T) {
		testenv.RequireTool(t, "zsh", "zsh")
		fdir := filepath.Join(dir, "zfunc")
		os.Mkdir(fdir, 0o755)
		os.Rename(script("zsh"), filepath.Join(fdir, "_ban-client"))
		cmd := exec.Command("zsh", "-f", "-c", `zsh -n "$1/_ban-client" && fpath=("$1" $fpath) && autoload -U compinit && compinit -u -d "$1/.zcompdump" && print -r -- $_comps[ban-client]`, "zsh", fdir)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "_ban-client" {
			t.Errorf("zsh: %v: %s", err, out)
		}
	})
	t.Run("fish", func(t *testing.T) {
		testenv.RequireTool(t, "fish", "fish")
		path := script("fish")
		for _, c := range []struct{ line, want string }{
			{"ban-client sta", "status\tthe jails, or the failures, files and bans of one"},
			{"ban-client status ", "sasl"},
			{"ban-client why ", "203.0.113.7"},
			{"ban-client test-filter zimbra-pro", "zimbra-proxy-auth"},
		} {
			cmd := exec.Command("fish", "--no-config", "-c", `source $argv[1]; complete -C"$argv[2]"`, path, c.line)
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), c.want) {
				t.Errorf("fish completes %q to %q (%v); want %q", c.line, out, err, c.want)
			}
		}
	})
	if code, _, stderr := client("completion", "tcsh"); code != exitUsage || !strings.Contains(stderr, "bash, zsh or fish") {
		t.Errorf("completion tcsh: exit %d: %s", code, stderr)
	}
}

// The commands completion offers are the commands there are: each has its own help and
// a line in the usage, and each command with its own help is offered, but for
// fail2ban's words, which point to logban's own.
func TestCompletionOffersEveryCommand(t *testing.T) {
	offered := map[string]bool{}
	for _, c := range commandSummaries {
		offered[c.name] = true
		if c.name != "help" && commandHelp[c.name] == "" {
			t.Errorf("completion offers %s, which has no help of its own", c.name)
		}
		if !strings.Contains(usage, "\n  "+c.name) {
			t.Errorf("completion offers %s, which the usage does not list", c.name)
		}
	}
	for name := range commandHelp {
		if !offered[name] && name != "set" && name != "banned" {
			t.Errorf("completion does not offer %s", name)
		}
	}
}

// Without a running server, jail names complete from the configuration.
func TestJailsCompleteWithoutAServer(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "logban.toml")
	os.WriteFile(cfg, []byte(strings.Replace(testConfig, `socket = "logban.sock"`, `socket = "nobody-here.sock"`, 1)), 0o644)
	code, stdout, _ := client("-config", cfg, "__complete", "jails")
	if code != 0 || stdout != "sasl\n" {
		t.Errorf("exit %d, %q; want the configuration's jail, sasl", code, stdout)
	}
}
