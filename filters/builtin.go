package filters

import (
	"embed"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

//go:embed builtin/*.toml
var builtinFS embed.FS

// Definition is a filter as written in TOML: the built-in pack and [filters.NAME] tables
// share this shape. A filter has failregex patterns or a parser, one of the built-in
// formats (FormatNames), and may add ignoreregex to either.
type Definition struct {
	Description string   `toml:"description"`
	Parser      string   `toml:"parser"`
	FailRegex   []string `toml:"failregex"`
	IgnoreRegex []string `toml:"ignoreregex"`
	// SuccessRegex finds logins that worked, each with <HOST> and <USER>: the pairs
	// of account and address a jail then trusts (see jails.Trust).
	SuccessRegex []string `toml:"successregex"`
}

// Builtin returns the definition of the built-in filter name; ok is false if there is no
// such filter.
func Builtin(name string) (d Definition, ok bool, err error) {
	data, err := builtinFS.ReadFile(path.Join("builtin", name+".toml"))
	if err != nil {
		return Definition{}, false, nil
	}
	if _, err := toml.Decode(string(data), &d); err != nil {
		return Definition{}, true, fmt.Errorf("built-in filter %q: %w", name, err)
	}
	return d, true, nil
}

// BuiltinNames lists the built-in filters, sorted.
func BuiltinNames() []string {
	entries, _ := builtinFS.ReadDir("builtin")
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".toml"); ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// ReadsDevices reports whether a filter of d names the device of a line it counts: a
// failregex with <DEVICE>, or a format that reads devices.
func ReadsDevices(d Definition) bool {
	if d.Parser != "" {
		return formats[d.Parser].device != nil
	}
	return slices.ContainsFunc(d.FailRegex, func(re string) bool { return strings.Contains(re, deviceTag) })
}

// Equal reports whether d and o match the same lines.
func (d Definition) Equal(o Definition) bool {
	return d.Parser == o.Parser && slices.Equal(d.FailRegex, o.FailRegex) && slices.Equal(d.IgnoreRegex, o.IgnoreRegex)
}
