package config

import (
	"fmt"
	"maps"
	"os"
	"slices"

	"github.com/logban/logban/actions"
)

// secretWarnings says which files holding secrets others than their owner may read: the
// farm's credentials, nkey seed and TLS key, and the configuration files themselves
// when they hold a password or a webhook's headers. A secret a local user can read
// lets that user speak for this host to the farm, or to the webhook's service.
func (c *Config) secretWarnings() []string {
	var out []string
	check := func(what, path string) {
		if path == "" {
			return
		}
		fi, err := os.Stat(path)
		if err != nil {
			return // -check reports a missing file where it matters
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			out = append(out, fmt.Sprintf("%s: %s is mode %04o, readable by others than its owner: chmod 600 %s", what, path, perm, path))
		}
	}
	secretsInConfig := ""
	if f := c.Farm; f != nil {
		check("farm.creds", f.Creds)
		check("farm.nkey_seed", f.NKeySeed)
		check("farm.tls_key", f.TLSKey)
		if f.Password != "" {
			secretsInConfig = "farm.password"
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Actions)) {
		if w, ok := c.Actions[name].Options.(*actions.WebhookOptions); ok && len(w.Headers) > 0 && secretsInConfig == "" {
			secretsInConfig = "actions." + name + ".headers"
		}
	}
	if secretsInConfig != "" {
		for _, f := range c.Files {
			check("the configuration holds "+secretsInConfig, f)
		}
	}
	return out
}
