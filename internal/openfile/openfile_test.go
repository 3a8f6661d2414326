package openfile

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/logban/logban/internal/testenv"
)

// folderOfNobody returns a folder that the user nobody owns, as zimbra owns
// /opt/zimbra/log, and a file only root may read or write, outside it.
func folderOfNobody(t *testing.T) (dir, secret string) {
	t.Helper()
	testenv.RequireRoot(t)
	dir = t.TempDir()
	if err := os.Chown(dir, testenv.Nobody, testenv.Nobody); err != nil {
		t.Fatal(err)
	}
	secret = filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(secret, []byte("root:$y$secret:\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, secret
}

// plantLink makes name a link to target owned by nobody, as the folder's owner would.
func plantLink(t *testing.T, target, name string) {
	t.Helper()
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(name, testenv.Nobody, testenv.Nobody); err != nil {
		t.Fatal(err)
	}
}

// The owner of a log folder replaces the log by a link to a file only root may read:
// it is not opened for reading, nor for appending.
func TestLinkOfTheFoldersOwnerIsNotFollowed(t *testing.T) {
	dir, secret := folderOfNobody(t)
	log := filepath.Join(dir, "mailbox.log")
	plantLink(t, secret, log)
	if f, err := Regular(log, os.O_RDONLY, 0); !errors.Is(err, ErrRefused) {
		f.Close()
		t.Errorf("read through nobody's link: %v, want refused", err)
	}
	if f, err := Regular(log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640); !errors.Is(err, ErrRefused) {
		f.Close()
		t.Errorf("append through nobody's link: %v, want refused", err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "root:$y$secret:\n" {
		t.Errorf("the secret file was written to: %q", b)
	}
}

// A link root made (the administrator's own) is followed.
func TestRootsLinkIsFollowed(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	real := filepath.Join(dir, "real.log")
	os.WriteFile(real, []byte("line\n"), 0o644)
	link := filepath.Join(dir, "zimbra.log")
	os.Symlink("real.log", link)
	f, err := Regular(link, os.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("root's link: %v", err)
	}
	f.Close()
}

// A FIFO is refused at once, for reading and writing; a file with a second name (a
// hard link to another file) is not written to.
func TestNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Regular(fifo, os.O_RDONLY, 0); !errors.Is(err, ErrRefused) {
		t.Errorf("FIFO for reading: %v", err)
	}
	if _, err := Regular(dir, os.O_RDONLY, 0); !errors.Is(err, ErrRefused) {
		t.Errorf("a folder: %v", err)
	}
	file := filepath.Join(dir, "bans.log")
	os.WriteFile(file, nil, 0o600)
	os.Link(file, filepath.Join(dir, "second"))
	if _, err := Regular(file, os.O_WRONLY|os.O_APPEND, 0); !errors.Is(err, ErrRefused) {
		t.Errorf("a file with two names, for writing: %v", err)
	}
	f, err := Regular(file, os.O_RDONLY, 0)
	if err != nil {
		t.Errorf("the same file for reading: %v", err)
	} else {
		f.Close()
	}
	created := filepath.Join(dir, "new.log")
	f, err = Regular(created, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatalf("creating: %v", err)
	}
	f.Close()
}
