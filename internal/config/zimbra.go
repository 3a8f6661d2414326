package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Zimbra is the [zimbra] table: where the Zimbra or Carbonio install is whose directory
// names the farm's servers, and how often it is read.
type Zimbra struct {
	// Root is the install's folder, whose conf/localconfig.xml holds the directory's
	// URL and credentials (read at each read, never copied); "" finds /opt/zimbra or
	// /opt/zextras.
	Root string
	// Every is how often the directory is read again; it is also read at each reload.
	Every time.Duration
}

// DefaultZimbraEvery is how often [zimbra] reads the directory unless told.
const DefaultZimbraEvery = 5 * time.Minute

type zimbraData struct {
	Root  *string   `toml:"root"`
	Every *Duration `toml:"every"`
}

func (l *loader) buildZimbra(file string, d zimbraData) *Zimbra {
	z := &Zimbra{Every: DefaultZimbraEvery}
	if d.Root != nil {
		z.Root = l.abs(*d.Root)
		lc := filepath.Join(z.Root, "conf", "localconfig.xml")
		if _, err := os.Stat(lc); errors.Is(err, fs.ErrNotExist) {
			l.fail(file, 0, "zimbra.root", "%q: no conf/localconfig.xml there: not a Zimbra (/opt/zimbra) or Carbonio (/opt/zextras) install", *d.Root)
		}
	}
	if d.Every != nil {
		if z.Every = time.Duration(*d.Every); z.Every < 10*time.Second || z.Every > 24*time.Hour {
			l.fail(file, 0, "zimbra.every", "must be between 10s and 24h (like \"5m\")")
		}
	}
	return z
}
