package actions

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/logban/logban/internal/netnstest"
	"github.com/logban/logban/internal/testenv"
)

// ufwRoot copies the system's ufw configuration into a folder of the test's, so ufw runs
// with --rootdir and --datadir there and never touches the host's /etc/ufw.
func ufwRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, dir := range []string{"etc/ufw", "lib/ufw", "usr/share/ufw"} {
		if err := os.CopyFS(filepath.Join(root, dir), os.DirFS("/"+dir)); err != nil {
			t.Fatalf("copying /%s: %v", dir, err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "etc/default"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/etc/default/ufw")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/default/ufw"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestUFWInTheKernel(t *testing.T) {
	ufw := testenv.RequireTool(t, "ufw", "ufw")
	lab := netnstest.New(t)
	root := ufwRoot(t)
	args := []string{"--rootdir=" + root, "--datadir=" + root}
	run := func(cmd ...string) string { return lab.Run(ufw, append(args, cmd...)...) }
	run("default", "allow", "incoming") // the lab's listener stays open to all but the banned
	run("--force", "enable")
	opts := UFWOptions{InsertPos: 1, BlockType: "reject", Binary: ufw, Args: args}
	if err := opts.Validate(); err != nil {
		t.Fatal(err)
	}
	u := NewUFW(opts, quiet)
	var err error
	lab.Do(func() { err = u.Start(context.Background()) })
	if err != nil {
		t.Fatal(err)
	}
	checkBlocking(t, lab, u, "sasl", func() {
		status := regexp.MustCompile(`(?m)^WARN: .*\n`).ReplaceAllString(run("status"), "") // about the temp folder
		golden(t, "ufw-status", regexp.MustCompile(` +`).ReplaceAllString(status, " "))
	})
	if got := regexp.MustCompile(` +`).ReplaceAllString(run("status"), " "); regexp.MustCompile(`192\.0\.2\.2|2001:db8::2`).MatchString(got) {
		t.Errorf("rules left after unban:\n%s", got)
	}
}
