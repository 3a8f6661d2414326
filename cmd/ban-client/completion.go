package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/logban/logban/filters"
	"github.com/logban/logban/internal/config"
	"github.com/logban/logban/internal/control"
)

// commandSummaries are the commands shell completion offers, with the line each shows.
// A summary holds no quote, colon or parenthesis: it goes into shell words as it is.
var commandSummaries = []struct{ name, summary string }{
	{"ping", "check that ban-server answers"},
	{"status", "the jails, or the failures, files and bans of one"},
	{"list", "every ban, or those of a jail"},
	{"get", "the banned addresses or a setting of a jail"},
	{"banip", "ban addresses in a jail by hand"},
	{"unbanip", "lift the bans of addresses"},
	{"unban", "lift every ban"},
	{"unbankey", "lift the ban of an account or device"},
	{"reload", "reread the configuration of the server"},
	{"farm", "the farm as this host sees it"},
	{"version", "the versions of this client and the server"},
	{"why", "why an address is banned"},
	{"history", "the ban history of an address"},
	{"test-filter", "run a filter over a log file, without a server"},
	{"import-fail2ban", "turn a fail2ban configuration into a logban one"},
	{"setup", "write this host configuration from the Zimbra or Carbonio directory"},
	{"completion", "print a shell completion script"},
	{"help", "the help, or the help of a command"},
}

// Which commands complete what: a jail first, a banned address, a file.
var (
	completesJail    = []string{"status", "banip", "get", "set", "unbankey"}
	completesAddress = []string{"unbanip", "why", "history"}
	completesFile    = []string{"test-filter", "import-fail2ban"} // test-filter's first word is a filter
)

// globalFlags are ban-client's own flags, as completion offers them.
var globalFlags = []struct{ name, summary string }{
	{"config", "read the socket path from this configuration file"},
	{"socket", "control socket path"},
	{"timeout", "how long to wait for the server"},
	{"json", "print the answer as JSON"},
}

// completionScript writes the completion script for shell (bash, zsh or fish).
func completionScript(w io.Writer, shell string) error {
	var names []string
	for _, c := range commandSummaries {
		names = append(names, c.name)
	}
	var flagWords []string
	for _, f := range globalFlags {
		flagWords = append(flagWords, "-"+f.name, "--"+f.name)
	}
	words := func(s []string) string { return strings.Join(s, " ") }
	alts := func(s []string) string { return strings.Join(s, "|") }
	switch shell {
	case "bash":
		fmt.Fprintf(w, `# bash completion for ban-client. Load it with: source <(ban-client completion bash)

_ban_client() {
    local cur prev words cword
    if declare -F _init_completion >/dev/null; then
        _init_completion || return
    else
        cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
        words=("${COMP_WORDS[@]}") cword=$COMP_CWORD
    fi
    case $prev in
        -config|--config|-socket|--socket|-o)
            COMPREPLY=($(compgen -f -- "$cur")); return ;;
        -timeout|--timeout|--jail|-jail)
            return ;;
    esac
    local cmd= i
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            -config|--config|-socket|--socket|-timeout|--timeout) ((i++)) ;;
            -*) ;;
            *) cmd=${words[i]}; break ;;
        esac
    done
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "%s" -- "$cur")); return
    fi
    case $cmd in
        "") COMPREPLY=($(compgen -W "%s" -- "$cur")) ;;
        help) COMPREPLY=($(compgen -W "%s" -- "$cur")) ;;
        completion) COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur")) ;;
        %s) COMPREPLY=($(compgen -W "$(ban-client __complete jails 2>/dev/null)" -- "$cur")) ;;
        %s) COMPREPLY=($(compgen -W "$(ban-client __complete banned 2>/dev/null)" -- "$cur")) ;;
        test-filter)
            if ((cword == i + 1)); then
                COMPREPLY=($(compgen -W "$(ban-client __complete filters 2>/dev/null)" -- "$cur"))
            else
                COMPREPLY=($(compgen -f -- "$cur"))
            fi ;;
        %s) COMPREPLY=($(compgen -f -- "$cur")) ;;
    esac
}
complete -F _ban_client ban-client
`, words(flagWords), words(names), words(names), alts(completesJail), alts(completesAddress), alts(completesFile))
	case "zsh":
		fmt.Fprintf(w, "#compdef ban-client\n# zsh completion for ban-client: put it in a folder of $fpath as _ban-client.\n\n_ban_client() {\n    local -a commands\n    commands=(\n")
		for _, c := range commandSummaries {
			fmt.Fprintf(w, "        '%s:%s'\n", c.name, c.summary)
		}
		fmt.Fprintf(w, "    )\n    local curcontext=$curcontext state line\n    _arguments -C \\\n")
		for _, f := range globalFlags {
			arg := ":value:"
			switch f.name {
			case "config", "socket":
				arg = ":file:_files"
			case "json":
				arg = ""
			}
			fmt.Fprintf(w, "        '-%s[%s]%s' \\\n", f.name, f.summary, arg)
		}
		fmt.Fprintf(w, `        '1: :->command' \
        '*:: :->args'
    case $state in
        command) _describe command commands ;;
        args)
            case $words[1] in
                help) _describe command commands ;;
                completion) compadd bash zsh fish ;;
                %s) compadd -- ${(f)"$(ban-client __complete jails 2>/dev/null)"} ;;
                %s) compadd -- ${(f)"$(ban-client __complete banned 2>/dev/null)"} ;;
                test-filter) if (( CURRENT == 2 )); then compadd -- ${(f)"$(ban-client __complete filters 2>/dev/null)"}; else _files; fi ;;
                %s) _files ;;
            esac ;;
    esac
}

_ban_client "$@"
`, alts(completesJail), alts(completesAddress), alts(completesFile))
	case "fish":
		fmt.Fprintln(w, "# fish completion for ban-client: put it in ~/.config/fish/completions/ban-client.fish.")
		fmt.Fprintln(w, "complete -c ban-client -f")
		for _, f := range globalFlags {
			req := ""
			if f.name != "json" {
				req = " -r"
			}
			fmt.Fprintf(w, "complete -c ban-client -o %s -l %s%s -d '%s'\n", f.name, f.name, req, f.summary)
		}
		for _, c := range commandSummaries {
			fmt.Fprintf(w, "complete -c ban-client -n __fish_use_subcommand -a %s -d '%s'\n", c.name, c.summary)
		}
		fmt.Fprintf(w, "complete -c ban-client -n '__fish_seen_subcommand_from help' -a '%s'\n", words(names))
		fmt.Fprintln(w, "complete -c ban-client -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'")
		fmt.Fprintf(w, "complete -c ban-client -n '__fish_seen_subcommand_from %s' -a '(ban-client __complete jails 2>/dev/null)'\n", words(completesJail))
		fmt.Fprintf(w, "complete -c ban-client -n '__fish_seen_subcommand_from %s' -a '(ban-client __complete banned 2>/dev/null)'\n", words(completesAddress))
		fmt.Fprintln(w, "complete -c ban-client -n '__fish_seen_subcommand_from test-filter' -a '(ban-client __complete filters 2>/dev/null)'")
		fmt.Fprintf(w, "complete -c ban-client -n '__fish_seen_subcommand_from %s' -F\n", words(completesFile))
	default:
		return usageError{fmt.Sprintf("completion takes bash, zsh or fish, not %q", shell)}
	}
	return nil
}

// completeWords prints what the completion scripts ask for, one a line: the jails, the
// banned addresses (the server's), or the filters (the built-in ones and the
// configuration's). Without a server, the jails are the configuration's (configPath,
// else /etc/logban/logban.toml), where it loads; the banned addresses, none.
func completeWords(ctx context.Context, c *control.Client, w io.Writer, what, configPath string) {
	switch what {
	case "jails":
		var jails []string
		if s, err := c.Status(ctx); err == nil {
			jails = s.Jails
		} else {
			if configPath == "" {
				configPath = "/etc/logban/logban.toml"
			}
			if cfg, err := config.Load(configPath); err == nil {
				jails = slices.Sorted(maps.Keys(cfg.Jails))
			}
		}
		for _, j := range jails {
			fmt.Fprintln(w, j)
		}
	case "filters":
		names := filters.BuiltinNames()
		if configPath == "" {
			configPath = "/etc/logban/logban.toml"
		}
		if cfg, err := config.Load(configPath); err == nil {
			names = append(names, slices.Collect(maps.Keys(cfg.Filters))...)
		}
		slices.Sort(names)
		for _, n := range slices.Compact(names) {
			fmt.Fprintln(w, n)
		}
	case "banned":
		if bans, err := c.List(ctx, ""); err == nil {
			var addrs []string
			for _, b := range bans {
				addrs = append(addrs, b.String())
			}
			slices.Sort(addrs)
			for _, a := range slices.Compact(addrs) {
				fmt.Fprintln(w, a)
			}
		}
	}
}
