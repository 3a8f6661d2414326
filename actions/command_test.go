package actions

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestArgvHelper is not a test: the exec tests run the test binary as the action's
// program, and this records the arguments it was given.
func TestArgvHelper(t *testing.T) {
	out := os.Getenv("LOGBAN_ARGV_OUT")
	if out == "" {
		return
	}
	args := os.Args[slices.Index(os.Args, "--")+1:]
	f, _ := os.OpenFile(out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	json.NewEncoder(f).Encode(args)
	f.Close()
	if len(args) > 0 && args[0] == "fail" {
		os.Exit(3)
	}
	os.Exit(0)
}

// recordedArgv returns the argument lists TestArgvHelper recorded.
func recordedArgv(t *testing.T, path string) [][]string {
	t.Helper()
	b, _ := os.ReadFile(path)
	var out [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var args []string
		if err := json.Unmarshal([]byte(line), &args); err != nil {
			t.Fatal(err)
		}
		out = append(out, args)
	}
	return out
}

func helperArgv(args ...string) []string {
	return append([]string{os.Args[0], "-test.run=^TestArgvHelper$", "--"}, args...)
}

func TestExecRunsArgvWithoutAShell(t *testing.T) {
	out := filepath.Join(t.TempDir(), "argv.jsonl")
	t.Setenv("LOGBAN_ARGV_OUT", out)
	opts := ExecOptions{
		Start:   helperArgv("start"),
		Ban:     helperArgv("ban", "{ip}", "--jail={jail}", "{failures}", "{bantime}", "{user}"),
		Unban:   helperArgv("unban", "{ip}", "{user}"),
		Check:   helperArgv("fail", "check"),
		Notify:  helperArgv("notify", "{ip}", "{user}", "{kind}"),
		Timeout: "10s",
	}
	if err := opts.Validate(); err != nil {
		t.Fatal(err)
	}
	e, err := NewExec(opts, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	hostile := Ban{Jail: `a b; rm -rf / $(reboot) "x"`, Addr: netip.MustParseAddr("2001:db8::7"), Failures: 3, BannedAt: now, Expires: now.Add(time.Hour),
		User: `anna$(id) "; --x`}
	if err := e.Ban(ctx, hostile); err != nil {
		t.Fatal(err)
	}
	if err := e.Unban(ctx, Ban{Jail: "j", Addr: netip.MustParseAddr("198.51.100.0"), Bits: 24}); err != nil {
		t.Fatal(err)
	}
	if err := e.Notify(ctx, Notice{Jail: "j", Kind: "known-good", Addr: netip.MustParseAddr("203.0.113.50"), User: "anna; reboot"}); err != nil {
		t.Fatal(err)
	}
	got := recordedArgv(t, out)
	want := [][]string{
		{"fail", "check"}, // check failed...
		{"start"},         // ...so start ran again
		{"ban", "2001:db8::7", `--jail=a b; rm -rf / $(reboot) "x"`, "3", "3600", `anna$(id) "; --x`},
		{"unban", "198.51.100.0/24", ""},
		{"notify", "203.0.113.50", "anna; reboot", "known-good"},
	}
	if len(got) != len(want) {
		t.Fatalf("ran %q, want %q", got, want)
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("command %d: %q, want %q", i, got[i], want[i])
		}
	}
}

func TestExecFailureCarriesOutput(t *testing.T) {
	t.Setenv("LOGBAN_ARGV_OUT", filepath.Join(t.TempDir(), "argv.jsonl"))
	e, _ := NewExec(ExecOptions{Ban: helperArgv("fail"), Unban: helperArgv("x"), Timeout: "10s"}, quiet)
	err := e.Ban(context.Background(), Ban{Jail: "j", Addr: netip.MustParseAddr("192.0.2.9")})
	if err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("got %v", err)
	}
	missing, _ := NewExec(ExecOptions{Ban: []string{"/nonexistent/block"}, Unban: []string{"x"}, Timeout: "1s"}, quiet)
	if err := missing.Ban(context.Background(), Ban{Addr: netip.MustParseAddr("192.0.2.9")}); err == nil {
		t.Error("a missing program succeeded")
	}
}

func TestExecValidate(t *testing.T) {
	for _, o := range []ExecOptions{
		{Unban: []string{"x"}, Timeout: "1s"},
		{Ban: []string{"x", "{addr}"}, Unban: []string{"x"}, Timeout: "1s"},
		{Ban: []string{"x"}, Unban: []string{"x"}, Timeout: "soon"},
		{Ban: []string{""}, Unban: []string{"x"}, Timeout: "1s"},
	} {
		if o.Validate() == nil {
			t.Errorf("%+v passed", o)
		}
	}
}

// argvRecorder stands in for the command runner, to check the exact argv. failInsert
// answers an insert as ufw does when it has no rule at that position.
type argvRecorder struct {
	argv       [][]string
	failInsert bool
}

func (r *argvRecorder) Run(_ context.Context, argv []string) error {
	r.argv = append(r.argv, argv)
	if r.failInsert && slices.Contains(argv, "insert") {
		return errors.New("ufw: exit status 1: ERROR: Invalid position '1'")
	}
	return nil
}

func TestUFWFallsBackToPrepend(t *testing.T) {
	u := NewUFW(UFWOptions{InsertPos: 1, BlockType: "reject", Binary: "ufw"}, quiet)
	rec := &argvRecorder{failInsert: true}
	u.run = rec
	if err := u.Ban(context.Background(), Ban{Addr: netip.MustParseAddr("2001:db8::5")}); err != nil {
		t.Fatal(err)
	}
	if len(rec.argv) != 2 || strings.Join(rec.argv[1], " ") != "ufw prepend reject from 2001:db8::5 to any" {
		t.Errorf("ran %q", rec.argv)
	}
}

func TestUFWArgv(t *testing.T) {
	b := Ban{Jail: "sasl", Addr: netip.MustParseAddr("203.0.113.5")}
	tests := []struct {
		opts       UFWOptions
		ban, unban string
	}{
		{UFWOptions{InsertPos: 1, BlockType: "reject", Binary: "ufw"},
			"ufw insert 1 reject from 203.0.113.5 to any", "ufw delete reject from 203.0.113.5 to any"},
		{UFWOptions{InsertPos: 3, BlockType: "deny", Binary: "ufw", Application: "Postfix Submission"},
			"ufw insert 3 deny from 203.0.113.5 to any app Postfix Submission", "ufw delete deny from 203.0.113.5 to any app Postfix Submission"},
		{UFWOptions{InsertPos: 1, BlockType: "reject", Binary: "/usr/sbin/ufw", Port: "587", Proto: "tcp"},
			"/usr/sbin/ufw insert 1 reject from 203.0.113.5 to any port 587 proto tcp", "/usr/sbin/ufw delete reject from 203.0.113.5 to any port 587 proto tcp"},
	}
	for _, tt := range tests {
		if err := tt.opts.Validate(); err != nil {
			t.Fatal(err)
		}
		u := NewUFW(tt.opts, quiet)
		rec := &argvRecorder{}
		u.run = rec
		u.Ban(context.Background(), b)
		u.Unban(context.Background(), b)
		if len(rec.argv) != 2 || strings.Join(rec.argv[0], " ") != tt.ban || strings.Join(rec.argv[1], " ") != tt.unban {
			t.Errorf("ran %q; want %q and %q", rec.argv, tt.ban, tt.unban)
		}
	}
	// A network's ban is a rule from the network.
	rec := &argvRecorder{}
	u := NewUFW(UFWOptions{InsertPos: 1, BlockType: "reject", Binary: "ufw"}, quiet)
	u.run = rec
	u.Ban(context.Background(), BanOf("sasl", netip.MustParsePrefix("198.51.100.0/24")))
	if got := strings.Join(rec.argv[0], " "); got != "ufw insert 1 reject from 198.51.100.0/24 to any" {
		t.Errorf("a network's ban ran %q", got)
	}
	// The application name is one argument, spaces and all.
	u = NewUFW(UFWOptions{InsertPos: 1, BlockType: "reject", Binary: "ufw", Application: "Postfix Submission"}, quiet)
	if argv := u.BanArgv(b); argv[len(argv)-1] != "Postfix Submission" {
		t.Errorf("argv %q", argv)
	}
}
