// Package fail2ban reads a fail2ban configuration the way fail2ban does and turns it into
// a logban one: ban-client import-fail2ban.
//
// The parts, a file each:
//
//   - ini.go reads one INI file by the rules of Python's configparser as fail2ban sets it
//     up: "=" or ":", indented continuation lines, "#" and ";" comments, ";" inline
//     comments after a space, lower-cased keys.
//   - conf.go reads a configuration unit (jail, filter.d/NAME, action.d/NAME) as fail2ban's
//     ConfigReader does: NAME.conf, NAME.d/*.conf, NAME.local, NAME.d/*.local, each with
//     its [INCLUDES] before and after; sections merged in that order, the values they
//     replace kept for %(known/...)s; %(name)s and %(section/name)s interpolation; <tag>
//     substitution; and the NAME[key=value, ...] option syntax of filter and action.
//   - regex.go turns a fail2ban regex into one logban's filters run (RE2): the tags
//     (<HOST>, <ADDR>, <F-USER>...), prefregex's <F-CONTENT>, the date fail2ban cuts out
//     of a line before matching, a look-ahead outside any group as an ignoreregex; and
//     says why a regex cannot be turned (other look-arounds, back-references, several
//     lines).
//   - regextree.go parses a regex into a tree to write out what RE2 lacks where that is
//     exact: a conditional (?(group)yes|no), one regex for each way its group takes
//     part; <F-NOFAIL> in one alternative, an ignoreregex; the tempered (?:(?!X).)* over
//     a literal, the regex of the strings without X.
//   - action.go maps fail2ban's stock actions to logban's kinds, with their ports.
//   - convert.go turns the jails, filters and actions, keeping every point it could not
//     convert, per jail and per regex, for the report; toml.go writes the configuration
//     with those points as comments where each applies.
//
// Go's gopkg.in/ini.v1 was weighed for ini.go: its inline comments take "#" as well
// (which fail2ban regexes hold), and its interpolation knows neither fail2ban's
// %(section/name)s nor %(known/name)s, which this reader needs underneath anyway.
package fail2ban
