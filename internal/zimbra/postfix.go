package zimbra

import (
	"fmt"
	"path/filepath"
	"strings"
)

// PolicySocketName is the policy service's socket in Postfix's private folder, as
// smtpd names it (relative to queue_directory).
const PolicySocketName = "private/logban"

// PolicySocket returns where the policy service listens on an install's MTA: in its
// Postfix's queue directory (zimbra-attrs.xml: zimbraMtaQueueDirectory,
// /opt/zimbra/data/postfix/spool), which smtpd reaches as private/logban. Never
// 127.0.0.1:10031: that is Zimbra's CBPolicyD (zimbraCBPolicydBindPort).
func (in Install) PolicySocket() string {
	return filepath.Join(in.Root, "data", "postfix", "spool", PolicySocketName)
}

// PolicyCheck is the restriction that asks logban's policy service, through socket as
// smtpd names it, and lets mail through (DUNNO) while ban-server is down. Without
// default_action, Postfix answers every client "451 4.3.5 Server configuration problem"
// until ban-server is back: safer against a banned client, but no mail arrives.
func PolicyCheck(socket string) string {
	return "check_policy_service { unix:" + socket + ", default_action=DUNNO }"
}

// Setting is one Postfix parameter: in main.cf (Service ""), or a master.cf service's
// own (Service "submission/inet"), as postconf -P names it.
type Setting struct{ Service, Name, Value string }

// PostfixSettings returns the settings that put logban's policy service in front of
// Postfix's clients: main.cf's client and data restrictions (the check first, before
// client and data, their present values), and for each submission service (the
// services where clients log in with SASL) its own, which Zimbra's master.cf.in sets:
// smtpd_client_restrictions = permit_sasl_authenticated, reject and
// smtpd_data_restrictions empty, so main.cf's never reach them.
//
// With Postfix's default smtpd_delay_reject = yes, client restrictions are asked at RCPT
// TO: a banned client is refused its mail (its addresses are null-routed or firewalled
// by the ban anyway); data restrictions count quotas before each message's data.
func PostfixSettings(socket, client, data string, submission []string) []Setting {
	check := PolicyCheck(socket)
	join := func(parts ...string) string {
		var out []string
		for _, p := range parts {
			if p = strings.TrimSpace(strings.Trim(strings.TrimSpace(p), ",")); p != "" {
				out = append(out, p)
			}
		}
		return strings.Join(out, ", ")
	}
	s := []Setting{
		{Name: "smtpd_client_restrictions", Value: join(check, client)},
		{Name: "smtpd_data_restrictions", Value: join(check, data)},
	}
	for _, svc := range submission {
		s = append(s,
			Setting{Service: svc, Name: "smtpd_client_restrictions", Value: join(check, "permit_sasl_authenticated, reject")},
			Setting{Service: svc, Name: "smtpd_data_restrictions", Value: check})
	}
	return s
}

// MasterOption writes s as a master.cf -o line; a value with spaces takes Postfix 3's
// braces.
func (s Setting) MasterOption() string {
	if strings.ContainsAny(s.Value, " \t") {
		return fmt.Sprintf("-o { %s = %s }", s.Name, s.Value)
	}
	return fmt.Sprintf("-o %s=%s", s.Name, s.Value)
}

// PostconfCommand writes s, a main.cf parameter, as the postconf command that sets it.
// A service's own parameter goes in master.cf as MasterOption writes it: postconf -P
// refuses a value with spaces, which the policy check's braces hold.
func (s Setting) PostconfCommand() string {
	return fmt.Sprintf("postconf -e '%s = %s'", s.Name, s.Value)
}

// PostfixWiring returns, for an install's MTA server s, the commands and edits that wire
// the policy service into its Postfix durably: main.cf's restrictions through the LDAP
// attributes zmconfigd renders verbatim (zm-mailbox, conf/zmconfigd.cf: POSTCONF
// smtpd_client_restrictions VAR zimbraMtaSmtpdClientRestrictions, and the data
// restrictions likewise), and the submission services' through master.cf.in, which
// zmconfigd renders master.cf from (zm-postfix, conf/postfix/master.cf.in).
func PostfixWiring(in Install, s Server) string {
	user, prov := "zimbra", "zmprov"
	if in.Product == "Carbonio" {
		user, prov = "zextras", "carbonio prov"
	}
	settings := PostfixSettings(PolicySocketName, s.ClientRestrictions, s.DataRestrictions, []string{"submission/inet", "465/inet"})
	var b strings.Builder
	fmt.Fprintf(&b, "# Postfix on %s, asking logban's policy service at %s\n", s.Name, in.PolicySocket())
	b.WriteString("# (the [policy] table above; never 127.0.0.1:10031, CBPolicyD's port).\n#\n")
	b.WriteString("# 1. Port 25: main.cf's client and data restrictions, kept in LDAP, which zmconfigd\n")
	b.WriteString("#    writes into main.cf as they are (present values kept after the check):\n")
	for _, st := range settings[:2] {
		attr := "zimbraMtaSmtpdClientRestrictions"
		if st.Name == "smtpd_data_restrictions" {
			attr = "zimbraMtaSmtpdDataRestrictions"
		}
		fmt.Fprintf(&b, "su - %s -c '%s ms %s %s \"%s\"'\n", user, prov, s.Name, attr, st.Value)
	}
	b.WriteString("#\n# 2. Submission (587) and smtps (465): master.cf.in gives them restrictions of their own,\n")
	fmt.Fprintf(&b, "#    so main.cf's never reach them. In %s/common/conf/master.cf.in, in the\n", in.Root)
	b.WriteString("#    \"submission inet\" and \"465 inet\" entries, replace the lines\n")
	b.WriteString("#        -o smtpd_client_restrictions=...   and   -o smtpd_data_restrictions=\n#    with\n")
	for _, st := range settings[2:4] {
		fmt.Fprintf(&b, "#        %s\n", st.MasterOption())
	}
	b.WriteString("#    A package upgrade replaces master.cf.in: make this edit again after each.\n#\n")
	fmt.Fprintf(&b, "# 3. Apply, and check what Postfix got:\nsu - %s -c 'zmmtactl restart'\n", user)
	fmt.Fprintf(&b, "su - %s -c 'postconf smtpd_client_restrictions smtpd_data_restrictions; postconf -P submission/inet/smtpd_data_restrictions'\n", user)
	b.WriteString("#\n# default_action=DUNNO lets mail through while ban-server is stopped (a banned client\n")
	b.WriteString("# is still refused by its null route). Without it Postfix answers every client\n")
	b.WriteString("# \"451 4.3.5 Server configuration problem\" until ban-server is back.\n")
	return b.String()
}

// PlainPostfixWiring returns the postconf commands and master.cf lines that wire the
// policy service into a Postfix of a distribution's own, its queue under
// /var/spool/postfix.
func PlainPostfixWiring() string {
	var b strings.Builder
	b.WriteString("# A plain Postfix: [policy] listen = \"unix:/var/spool/postfix/private/logban\",\n")
	b.WriteString("# socket_group = \"postfix\". The check goes before your present restrictions:\n")
	settings := PostfixSettings(PolicySocketName, "$(postconf -h smtpd_client_restrictions)", "$(postconf -h smtpd_data_restrictions)", []string{"submission/inet"})
	for _, st := range settings[:2] {
		b.WriteString(strings.ReplaceAll(st.PostconfCommand(), "'", "\"") + "\n")
	}
	b.WriteString("# and in master.cf, under \"submission inet\" (and \"smtps inet\", where enabled), in place\n")
	b.WriteString("# of its own -o smtpd_client_restrictions and -o smtpd_data_restrictions:\n")
	for _, st := range settings[2:] {
		b.WriteString("#   " + st.MasterOption() + "\n")
	}
	b.WriteString("postfix reload\n")
	return b.String()
}
