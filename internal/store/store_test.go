package store

import (
	"context"
	"math"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/logban/logban/internal/testenv"
	"github.com/logban/logban/watcher"
)

func TestPositionsSurviveReopening(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state", "logban.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]watcher.Position{
		"/var/log/zimbra.log":         {File: watcher.Identity{Device: 2049, Inode: 1234567, Head: math.MaxUint64 - 5}, Offset: 159_000_000},
		"/opt/zimbra/log/mailbox.log": {File: watcher.Identity{Device: 1, Inode: 2}, Offset: 0},
	}
	if err := s.SavePositions(ctx, want); err != nil {
		t.Fatal(err)
	}
	moved := map[string]watcher.Position{"/var/log/zimbra.log": {File: watcher.Identity{Device: 2049, Inode: 99, Head: 7}, Offset: 42}}
	if err := s.SavePositions(ctx, moved); err != nil {
		t.Fatal(err)
	}
	want["/var/log/zimbra.log"] = moved["/var/log/zimbra.log"]
	s.Close()

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Positions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("positions\n got %v\nwant %v", got, want)
	}
}

func TestReadableWithSqlite3(t *testing.T) {
	sqlite3 := testenv.RequireTool(t, "sqlite3", "sqlite3")
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "logban.db")
	s, _ := Open(ctx, path)
	s.SavePositions(ctx, map[string]watcher.Position{"/var/log/zimbra.log": {Offset: 42}})
	s.Close()
	out, err := exec.Command(sqlite3, path, "SELECT path, offset FROM positions").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "/var/log/zimbra.log|42" {
		t.Errorf("sqlite3: %s %v", out, err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "logban.db")
	s, _ := Open(ctx, path)
	s.db.Exec("PRAGMA user_version = 99")
	s.Close()
	if _, err := Open(ctx, path); err == nil || !strings.Contains(err.Error(), "newer logban") {
		t.Errorf("got %v", err)
	}
}
