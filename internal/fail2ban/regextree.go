package fail2ban

import (
	"fmt"
	"slices"
	"strings"
)

// Some Python constructs RE2 lacks can be written without, for the uses fail2ban's
// filters make of them: a conditional (?(name)yes|no) on a group that is either
// optional or one of several alternatives, by writing out one regex for each way the
// groups can take part; <F-NOFAIL> in one alternative, by a failregex without it and an
// ignoreregex with only it; and the "tempered" (?:(?!X).)* over a literal X, by a regex
// of the strings that do not hold X. This file parses a regex into a tree for them.

// rnode is one element of a parsed regex: an atom (an escape, a class, a character, an
// anchor) or a group, with the quantifier after it.
type rnode struct {
	atom  string     // the atom's text; "" for a group
	open  string     // a group's opening: "(", "(?:", "(?P<name>", "(?!", "(?i:"...; "(?(" for a conditional
	name  string     // a named group's or a conditional's group name
	alts  [][]*rnode // a group's alternatives; a conditional's yes and no
	quant string     // "", "?", "*?", "{0,2}"...
}

// parseRegex parses re into its top-level alternatives.
func parseRegex(re string) ([][]*rnode, error) {
	p := &rparser{s: re}
	alts, err := p.alternatives()
	if err != nil {
		return nil, err
	}
	if p.i < len(p.s) {
		return nil, fmt.Errorf("unbalanced ) at %d", p.i)
	}
	return alts, nil
}

type rparser struct {
	s string
	i int
}

func (p *rparser) alternatives() ([][]*rnode, error) {
	alts := [][]*rnode{nil}
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == ')':
			return alts, nil
		case c == '|':
			p.i++
			alts = append(alts, nil)
			continue
		}
		n, err := p.element()
		if err != nil {
			return nil, err
		}
		n.quant = p.quantifier()
		alts[len(alts)-1] = append(alts[len(alts)-1], n)
	}
	return alts, nil
}

func (p *rparser) element() (*rnode, error) {
	s, start := p.s, p.i
	switch s[p.i] {
	case '\\':
		if p.i+1 >= len(s) {
			return nil, fmt.Errorf("a \\ at the end")
		}
		p.i += 2
		return &rnode{atom: s[start:p.i]}, nil
	case '[':
		if p.i = classEnd(s, p.i); p.i > len(s) {
			return nil, fmt.Errorf("a [ not closed")
		}
		return &rnode{atom: s[start:p.i]}, nil
	case '(':
		n := &rnode{}
		switch {
		case strings.HasPrefix(s[p.i:], "(?P<"):
			end := strings.IndexByte(s[p.i:], '>')
			if end < 0 {
				return nil, fmt.Errorf("a (?P< not closed")
			}
			n.open, n.name = s[p.i:p.i+end+1], s[p.i+4:p.i+end]
		case strings.HasPrefix(s[p.i:], "(?("):
			end := strings.IndexByte(s[p.i:], ')')
			if end < 0 {
				return nil, fmt.Errorf("a (?( not closed")
			}
			n.open, n.name = "(?(", s[p.i+3:p.i+end]
		case strings.HasPrefix(s[p.i:], "(?"):
			end := p.i + 2
			for end < len(s) && s[end] != ':' && s[end] != ')' && s[end] != '!' && s[end] != '=' && s[end] != '<' {
				end++
			}
			if end < len(s) && s[end] == '<' && end+1 < len(s) && (s[end+1] == '=' || s[end+1] == '!') {
				end++
			}
			if end >= len(s) {
				return nil, fmt.Errorf("a (? not closed")
			}
			n.open = s[p.i : end+1]
			if s[end] == ')' { // (?i): flags for what follows
				p.i = end + 1
				return &rnode{atom: n.open}, nil
			}
		default:
			n.open = "("
		}
		p.i += len(n.open)
		if n.open == "(?(" {
			p.i = strings.IndexByte(s[start:], ')') + start + 1
		}
		alts, err := p.alternatives()
		if err != nil {
			return nil, err
		}
		if p.i >= len(s) {
			return nil, fmt.Errorf("a ( not closed")
		}
		p.i++
		n.alts = alts
		return n, nil
	}
	p.i++
	return &rnode{atom: s[start:p.i]}, nil
}

func (p *rparser) quantifier() string {
	s, start := p.s, p.i
	if p.i >= len(s) {
		return ""
	}
	switch s[p.i] {
	case '*', '+', '?':
		p.i++
	case '{':
		end := strings.IndexByte(s[p.i:], '}')
		if end < 0 || !isBound(s[p.i+1:p.i+end]) {
			return ""
		}
		p.i += end + 1
	default:
		return ""
	}
	if p.i < len(s) && (s[p.i] == '?' || s[p.i] == '+') {
		p.i++
	}
	return s[start:p.i]
}

func isBound(b string) bool {
	lo, hi, _ := strings.Cut(b, ",")
	digits := func(s string) bool { return !strings.ContainsFunc(s, func(r rune) bool { return r < '0' || r > '9' }) }
	return (lo != "" || hi != "") && digits(lo) && digits(hi)
}

// printRegex writes alternatives back as a regex.
func printRegex(alts [][]*rnode) string {
	var b strings.Builder
	printAlts(&b, alts)
	return b.String()
}

func printAlts(b *strings.Builder, alts [][]*rnode) {
	for i, alt := range alts {
		if i > 0 {
			b.WriteByte('|')
		}
		for _, n := range alt {
			if n.open == "" {
				b.WriteString(n.atom)
			} else {
				if n.open == "(?(" {
					b.WriteString("(?(" + n.name + ")")
				} else {
					b.WriteString(n.open)
				}
				printAlts(b, n.alts)
				b.WriteByte(')')
			}
			b.WriteString(n.quant)
		}
	}
}

// holds reports whether alternative alt holds the group named name, at any depth.
func holds(alt []*rnode, name string) bool {
	for _, n := range alt {
		if n.open != "" && n.open != "(?(" && n.name == name {
			return true
		}
		for _, a := range n.alts {
			if holds(a, name) {
				return true
			}
		}
	}
	return false
}

// conditionNames lists the group names conditionals test, in order of appearance.
func conditionNames(alts [][]*rnode) []string {
	var names []string
	var walk func([][]*rnode)
	walk = func(alts [][]*rnode) {
		for _, alt := range alts {
			for _, n := range alt {
				if n.open == "(?(" && !slices.Contains(names, n.name) {
					names = append(names, n.name)
				}
				walk(n.alts)
			}
		}
	}
	walk(alts)
	return names
}

// assume rewrites alts for one way the named groups take part (set[name] true: the
// group matched): an optional group that must match loses its ?, one that must not is
// dropped, an alternative that cannot be taken is dropped, and a conditional becomes
// the branch the group's part chooses. ok is false when no alternative is left.
func assume(alts [][]*rnode, set map[string]bool) (out [][]*rnode, ok bool, err error) {
	for _, alt := range alts {
		a, ok, err := assumeSeq(alt, set)
		if err != nil {
			return nil, false, err
		}
		if ok {
			out = append(out, a)
		}
	}
	// A group that must match lies in the alternatives that hold it.
	for name, isSet := range set {
		if !isSet || !slices.ContainsFunc(alts, func(a []*rnode) bool { return holds(a, name) }) {
			continue
		}
		out = slices.DeleteFunc(out, func(a []*rnode) bool { return !holds(a, name) })
	}
	return out, len(out) > 0, nil
}

func assumeSeq(alt []*rnode, set map[string]bool) ([]*rnode, bool, error) {
	var out []*rnode
	for _, n := range alt {
		if n.open == "" {
			out = append(out, n)
			continue
		}
		isSet, tested := set[n.name]
		if n.open == "(?(" {
			if !tested {
				return nil, false, fmt.Errorf("conditional on %q", n.name)
			}
			branch := [][]*rnode{nil}
			switch {
			case isSet:
				branch = n.alts[:1]
			case len(n.alts) > 1:
				branch = n.alts[1:2]
			}
			sub, ok, err := assume(branch, set)
			if err != nil {
				return nil, false, err
			}
			if !ok {
				return nil, false, nil
			}
			out = append(out, &rnode{open: "(?:", alts: sub, quant: n.quant})
			continue
		}
		c := *n
		if tested && n.name != "" && strings.HasPrefix(n.open, "(?P<") {
			switch {
			case isSet && (n.quant == "?" || n.quant == "??"):
				c.quant = ""
			case isSet && n.quant == "":
			case !isSet && (n.quant == "?" || n.quant == "??"):
				continue // it does not match: it is not there
			case !isSet && n.quant == "":
				return nil, false, nil
			default:
				return nil, false, fmt.Errorf("group %q repeated (%s)", n.name, n.quant)
			}
		}
		sub, ok, err := assume(n.alts, set)
		if err != nil {
			return nil, false, err
		}
		if !ok {
			if n.quant == "?" || n.quant == "??" || n.quant == "*" || n.quant == "*?" {
				continue
			}
			return nil, false, nil
		}
		c.alts = sub
		out = append(out, &c)
	}
	return out, true, nil
}

// expand writes out the regex once for each way the groups its conditionals test (and
// the group named extra, if any) can take part, and returns the variants by whether
// extra took part. It fails where a group is repeated or a conditional has no group.
func expand(re, extra string) (with, without []string, err error) {
	alts, err := parseRegex(re)
	if err != nil {
		return nil, nil, err
	}
	names := conditionNames(alts)
	if extra != "" {
		names = append(names, extra)
	}
	for mask := range 1 << len(names) {
		set := map[string]bool{}
		for i, name := range names {
			set[name] = mask&(1<<i) != 0
		}
		v, ok, err := assume(alts, set)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			continue
		}
		text := printRegex(v)
		if extra != "" && set[extra] {
			with = append(with, text)
		} else {
			without = append(without, text)
		}
	}
	return slices.Compact(with), slices.Compact(without), nil
}

// notContaining returns a regex of the strings (of any length) in which literal x does
// not occur: the automaton that finds x, its states written out as a regex by state
// elimination. x must be short; "" for none.
func notContaining(x string) string {
	m := len(x)
	if m == 0 || m > 16 {
		return ""
	}
	// fail[i]: the longest proper border of x[:i+1] (KMP).
	fail := make([]int, m)
	for i, k := 1, 0; i < m; i++ {
		for k > 0 && x[i] != x[k] {
			k = fail[k-1]
		}
		if x[i] == x[k] {
			k++
		}
		fail[i] = k
	}
	next := func(q int, c byte) int {
		for q > 0 && x[q] != c {
			q = fail[q-1]
		}
		if x[q] == c {
			q++
		}
		return q
	}
	chars := []byte(x)
	slices.Sort(chars)
	chars = slices.Compact(chars)
	// edges[p][q]: the regex of one step from state p to q; states m (start) and m+1
	// (end) are added for the elimination; state m of the automaton (x found) is left
	// out, so every path keeps clear of it.
	const start, end = -1, -2
	edges := map[[2]int]string{}
	add := func(p, q int, re string) {
		if old, ok := edges[[2]int{p, q}]; ok {
			edges[[2]int{p, q}] = old + "|" + re
			return
		}
		edges[[2]int{p, q}] = re
	}
	for q := range m {
		to := map[int][]byte{}
		for _, c := range chars {
			if t := next(q, c); t < m {
				to[t] = append(to[t], c)
			}
		}
		for t := range m {
			cs := to[t]
			var class string
			if t == 0 { // and every character x does not hold
				var not []byte
				for _, c := range chars {
					if !slices.Contains(cs, c) {
						not = append(not, c)
					}
				}
				class = "[^" + classChars(not) + "]"
			} else if len(cs) > 0 {
				class = "[" + classChars(cs) + "]"
			} else {
				continue
			}
			add(q, t, class)
		}
		add(q, end, "")
	}
	add(start, 0, "")
	group := func(re string) string {
		if re == "" {
			return ""
		}
		return "(?:" + re + ")"
	}
	for q := range m { // eliminate each state of the automaton
		loop := ""
		if l, ok := edges[[2]int{q, q}]; ok {
			loop = "(?:" + l + ")*"
		}
		var ins, outs []int
		for k := range edges {
			if k[1] == q && k[0] != q {
				ins = append(ins, k[0])
			}
			if k[0] == q && k[1] != q {
				outs = append(outs, k[1])
			}
		}
		slices.Sort(ins)
		slices.Sort(outs)
		for _, p := range ins {
			for _, r := range outs {
				add(p, r, group(edges[[2]int{p, q}])+loop+group(edges[[2]int{q, r}]))
			}
		}
		for k := range edges {
			if k[0] == q || k[1] == q {
				delete(edges, k)
			}
		}
	}
	return "(?:" + edges[[2]int{start, end}] + ")"
}

// classChars writes bytes for a character class, escaped.
func classChars(cs []byte) string {
	var b strings.Builder
	for _, c := range cs {
		if strings.IndexByte(`\]^-[`, c) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// literalOf returns the text a regex fragment matches, if it is a plain literal.
func literalOf(re string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(re); i++ {
		c := re[i]
		switch {
		case c == '\\' && i+1 < len(re) && strings.IndexByte(`.\[](){}*+?^$|/ -:'"`, re[i+1]) >= 0:
			i++
			b.WriteByte(re[i])
		case strings.IndexByte(`\.[](){}*+?^$|`, c) >= 0:
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), b.Len() > 0
}

// untemper replaces each (?:(?!X).)* and (?:(?!X).)*? over a literal X by the regex of
// the strings that do not hold X.
func untemper(re string) string {
	for {
		i := strings.Index(re, "(?:(?!")
		if i < 0 {
			return re
		}
		end := groupEnd(re, i+3)
		if end < 0 || !strings.HasPrefix(re[end+1:], ".)*") {
			return re
		}
		x, ok := literalOf(re[i+6 : end])
		nc := notContaining(x)
		if !ok || nc == "" {
			return re
		}
		rest := re[end+4:]
		rest = strings.TrimPrefix(rest, "?")
		re = re[:i] + nc + rest
	}
}
