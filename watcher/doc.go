// Package watcher follows log files by name and hands their lines on in batches, exactly
// once each, in order per file, across rotation, truncation and restarts.
//
// A Follower keeps the file it reads open, so when logrotate renames it, or someone
// deletes it, the lines still being written to it are read before and after the new file
// takes its name. It knows a file by its Identity (device, inode, and a hash of its first
// line, so a recycled inode is not taken for the old file), and reports a Position (an
// identity and the offset just past the last line handed on) that a restart resumes from,
// finding the old file under its rotated name if it moved while nobody watched.
//
// It owns reading and nothing else: it does not interpret lines. Changes are seen through
// inotify (github.com/fsnotify/fsnotify) on the file's folder, with a periodic check as a
// backstop for filesystems that raise no events.
package watcher
