package store

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/jails"
	"github.com/logban/logban/watcher"
)

// fill makes a database at path holding n bans and a position, and closes it.
func fill(t *testing.T, path string, n int) {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	var rs []jails.Record
	for i := range n {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		rs = append(rs, jails.Record{Ban: actions.Ban{Jail: "sasl", Addr: a, BannedAt: time.Now(), Expires: time.Now().Add(time.Hour)}, Count: 1})
	}
	if err := s.SaveBans(ctx, rs); err != nil {
		t.Fatal(err)
	}
	if err := s.SavePositions(ctx, map[string]watcher.Position{"/var/log/zimbra.log": {Offset: 42}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// damage overwrites n bytes of the file at path from offset at.
func damage(t *testing.T, path string, at int64, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(strings.Repeat("\xde\xad", n/2)), at); err != nil {
		t.Fatal(err)
	}
}

// A database whose header is damaged is moved aside, the host starts on a new one, and
// Salvaged says where the old one went.
func TestDamagedHeaderMovedAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logban.db")
	fill(t, path, 10)
	damage(t, path, 0, 100)
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("a damaged database kept the server from starting: %v", err)
	}
	defer s.Close()
	sv := s.Salvaged()
	if sv == nil || !strings.HasPrefix(sv.MovedTo, path+".corrupt-") {
		t.Fatalf("salvage %+v", sv)
	}
	if _, err := os.Stat(sv.MovedTo); err != nil {
		t.Errorf("the damaged file is not where Salvaged says: %v", err)
	}
	if bans, err := s.Bans(context.Background()); err != nil || len(bans) != 0 {
		t.Errorf("new database: %d bans, %v", len(bans), err)
	}
}

// A database damaged in the middle yields what can be read of it: the rows before the
// damage, in a new database.
func TestDamagedPagesSalvaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logban.db")
	fill(t, path, 5000)
	fi, _ := os.Stat(path)
	damage(t, path, fi.Size()*3/4, 4096)
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sv := s.Salvaged()
	if sv == nil {
		t.Fatal("damage not noticed")
	}
	bans, _ := s.Bans(context.Background())
	if sv.Bans == 0 || len(bans) != sv.Bans || sv.Bans >= 5000 {
		t.Errorf("salvaged %d bans (%d in the new database) of 5000", sv.Bans, len(bans))
	}
	t.Logf("salvaged %d of 5000 bans, %d positions", sv.Bans, sv.Positions)
}

// Check notices a database deleted, replaced or damaged while open.
func TestCheckNoticesALostDatabase(t *testing.T) {
	ctx := context.Background()
	for name, lose := range map[string]func(path string){
		"deleted":  func(path string) { os.Remove(path) },
		"replaced": func(path string) { os.Rename(path, path+".old"); os.WriteFile(path, []byte("x"), 0o600) },
		"header":   func(path string) { damage(t, path, 0, 16) },
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "logban.db")
			s, err := Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Check(ctx); err != nil {
				t.Fatalf("a sound database: %v", err)
			}
			lose(path)
			if err := s.Check(ctx); !errors.Is(err, ErrLost) || !strings.Contains(err.Error(), path) {
				t.Errorf("Check = %v, want ErrLost naming the path", err)
			}
		})
	}
}

// MoveAside takes the write-ahead log and shared memory along.
func TestMoveAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logban.db")
	for _, s := range []string{"", "-wal", "-shm"} {
		os.WriteFile(path+s, []byte(s), 0o600)
	}
	moved, err := MoveAside(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"", "-wal", "-shm"} {
		if _, err := os.Stat(path + s); err == nil {
			t.Errorf("%s still there", path+s)
		}
		if b, err := os.ReadFile(moved + s); err != nil || string(b) != s {
			t.Errorf("%s: %q %v", moved+s, b, err)
		}
	}
	if moved, err := MoveAside(filepath.Join(t.TempDir(), "none.db")); moved != "" || err != nil {
		t.Errorf("absent database: %q %v", moved, err)
	}

}
