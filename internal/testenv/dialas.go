package testenv

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Nobody is the user and group id of Debian's nobody and nogroup, the local user a
// test plays when it attacks as one.
const Nobody = 65534

const dialEnv = "LOGBAN_TEST_DIAL"

// DialAs connects to addr on network as the user uid with the group gid (a child
// process of the test binary with those credentials), sends send, and returns what came back before
// the other side closed or a second of silence. It needs root; a package that uses it
// calls ServeDialHelper at the top of its TestMain.
func DialAs(t testing.TB, uid, gid uint32, network, addr, send string) (string, error) {
	t.Helper()
	RequireRoot(t)
	exe := helperBinary(t)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), dialEnv+"="+network+" "+addr)
	cmd.Stdin = strings.NewReader(send)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

// helperBinary returns a copy of the test binary that any user may run.
func helperBinary(t testing.TB) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "logban-helper-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, filepath.Base(self))
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}

// ServeDialHelper is DialAs's other half: in the child it dials, talks and exits; in
// any other process it returns at once.
func ServeDialHelper() {
	spec := os.Getenv(dialEnv)
	if spec == "" {
		return
	}
	network, addr, _ := strings.Cut(spec, " ")
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	send, _ := io.ReadAll(os.Stdin)
	c.Write(send)
	c.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(os.Stdout, c)
	os.Exit(0)
}
