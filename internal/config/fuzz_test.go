package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzParseDuration: any text parses to a length of time that is not negative, or to
// forever (-1), or is refused; never a wrapped-around negative.
// go test -fuzz FuzzParseDuration ./internal/config
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"600", "10m", "1h30m", "1d", "2w3d12h", "-1", "0", "10000w10000d2562047h", "9223372036s", "1.5h", "1w1w", "d1", " 5m ", "1e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d < 0 && d != Forever {
			t.Fatalf("%q parsed to %v", s, time.Duration(d))
		}
	})
}

// FuzzLoad: any file is loaded or refused with errors, never a panic; a configuration
// that loads holds only what its checks allow.
// go test -fuzz FuzzLoad ./internal/config
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.toml")
	files = append(files, "../../examples/zimbra.toml", "../../examples/carbonio.toml", "../../examples/demo.toml")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "logban.toml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path)
		if err != nil {
			if err.Error() == "" || !strings.Contains(err.Error(), path) && !strings.Contains(err.Error(), "logban.toml") {
				t.Fatalf("an error that names no file: %q", err)
			}
			return
		}
		for name, j := range cfg.Jails {
			if j.MaxRetry < 1 || j.FindTime <= 0 || j.BanTime == 0 || len(j.Actions) == 0 || len(j.LogPath) == 0 {
				t.Fatalf("jail %s loaded as %+v", name, j)
			}
			for _, p := range j.LogPath {
				if !filepath.IsAbs(p) {
					t.Fatalf("jail %s: relative logpath %q", name, p)
				}
			}
			if _, ok := cfg.Filters[j.Filter]; !ok {
				t.Fatalf("jail %s: filter %q not loaded", name, j.Filter)
			}
		}
	})
}
