package listener

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestUnixSetsModeAndGroupBeforeTheNameAppears(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.sock")
	gid := os.Getgid()
	ln, err := Unix(path, 0o660, gid)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	if got := fi.Sys().(*syscall.Stat_t).Gid; int(got) != gid {
		t.Errorf("group %d, want %d", got, gid)
	}
	if ln.Addr().String() != path {
		t.Errorf("Addr() = %s, want %s", ln.Addr(), path)
	}
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dialing the socket: %v", err)
	}
	c.Close()
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the folder holds %d entries, want only the socket (the private folder removed)", len(entries))
	}
	ln.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket still there after Close: %v", err)
	}
}

func TestUnixReplacesOnlyAStaleSocket(t *testing.T) {
	dir := t.TempDir()

	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("keep me"), 0o644)
	if _, err := Unix(plain, 0o600, -1); !errors.Is(err, ErrNotSocket) {
		t.Errorf("over a plain file: %v, want ErrNotSocket", err)
	}
	if b, _ := os.ReadFile(plain); string(b) != "keep me" {
		t.Errorf("the plain file was changed: %q", b)
	}

	link := filepath.Join(dir, "link")
	os.Symlink(plain, link)
	if _, err := Unix(link, 0o600, -1); !errors.Is(err, ErrNotSocket) {
		t.Errorf("over a link: %v, want ErrNotSocket", err)
	}

	live := filepath.Join(dir, "live")
	ln, err := Unix(live, 0o600, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := Unix(live, 0o600, -1); !errors.Is(err, ErrInUse) {
		t.Errorf("over a live socket: %v, want ErrInUse", err)
	}

	stale := filepath.Join(dir, "stale")
	old, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close() // a server that died: its socket stays, nobody listens
	ln2, err := Unix(stale, 0o600, -1)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	ln2.Close()
}

// TestUnixNeverChangesWhatALinkPointsAt is the attack on a socket made by listen then
// chmod: the owner of the socket's folder swaps the socket's name for a link to a file
// only root may read, between the two, so that chmod makes that file world-writable.
// Made without a chmod through the path, the file keeps its mode, whatever the timing.
func TestUnixNeverChangesWhatALinkPointsAt(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(secret, []byte("root:x:"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "policy.sock")
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the folder's owner, swapping the name for a link as fast as it can
		defer wg.Done()
		tmp := filepath.Join(dir, "evil")
		for !stop.Load() {
			os.Remove(tmp)
			os.Symlink(secret, tmp)
			os.Rename(tmp, path)
		}
	}()
	deadline := time.Now().Add(2 * time.Second)
	starts := 0
	for ; starts < 200 && time.Now().Before(deadline); starts++ {
		if ln, err := Unix(path, 0o666, -1); err == nil {
			ln.Close()
		}
	}
	stop.Store(true)
	wg.Wait()
	fi, err := os.Stat(secret)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("after %d starts under attack the linked file's mode is %v, want 0600", starts, fi.Mode().Perm())
	}
}
