// Package jails counts failures and decides bans.
//
// A Jail runs its filter over lines, drops addresses that must never be banned (its
// IgnoreList) and counts the rest in a Window: maxretry failures within findtime, measured
// on the lines' own timestamps, make a Ticket. The Manager alone turns tickets into bans,
// remembers them, applies them through actions and lifts them when they expire on its
// Clock.
//
// This package does not read files or touch the kernel itself.
package jails
