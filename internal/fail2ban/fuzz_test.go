package fail2ban

import (
	"os"
	"path/filepath"
	"testing"
)

// A regex in a filter is written by whoever wrote the filter: turning it never panics,
// and what it turns into compiles (convertRegex checks that before it returns one).
func FuzzConvertRegex(f *testing.F) {
	for _, seed := range []string{
		`^Failed (?:<F-NOFAIL>publickey</F-NOFAIL>|\S+) for (?P<cond_inv>invalid user )?<F-USER>(?P<cond_user>\S+)|(?(cond_inv)(?:(?! from ).)*?|[^:]+)</F-USER> from <HOST>(?(cond_user): |(?:(?:(?! from ).)*)$)`,
		`^%(__prefix_line)s(?:error: )?auth failed from <HOST>(?! trusted)`,
		`[(?(x)]<HOST>((?P<x>a)?|(?(x)b))`, `(?P<a>`, `\`, `[^]`, `<F-USER>x</F-USER>`, `(?(`,
	} {
		f.Add(seed, `^\s*<F-MLFID>\S+</F-MLFID> <F-CONTENT>.+</F-CONTENT>$`)
	}
	f.Fuzz(func(t *testing.T, regex, pref string) {
		convertRegex(regex, filterContext{pref: pref}, false)
		convertRegex(regex, filterContext{}, true)
		datePatternPrefix(pref)
		notContaining(regex)
	})
}

// A fail2ban file is written by tired people: reading any text never panics.
func FuzzReadINI(f *testing.F) {
	f.Add("[Definition]\nfailregex = a <HOST>\n  b <HOST> ; c\n# d\n[DEFAULT]\nx: %(y)s\n")
	f.Add("[INCLUDES]\nbefore = x.conf\n\n[s]\nk=%(k)s\n")
	f.Fuzz(func(t *testing.T, text string) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "jail.conf"), []byte(text), 0o644)
		if c, err := readConf(dir, "jail"); err == nil {
			for _, s := range c.order {
				for _, k := range c.options(s) {
					c.get(s, k, nil)
				}
			}
			Import(dir, Options{All: true})
		}
	})
}
