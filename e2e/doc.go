// Package e2e holds end-to-end tests against real servers that the
// project's own test sinks do not imitate: rsyslog's TCP input, restarted
// mid-stream; two rsyslogd as primary and standby of a Manager with
// several endpoints, the primary stopped and started again while lines
// flow (failover_test.go); rsyslog's RELP input restarted four times
// under acknowledged delivery (relp_test.go). It is a module of its own
// so that `go test ./...` in the main module passes on a machine without
// rsyslog; here a
// missing rsyslogd fails the test with a message saying how to install
// it. It also holds the README's go-kit metrics recipe (graphite and
// dogstatsd over a BatchWriter), which needs go-kit/kit, with a test
// through collector restarts.
//
// Run it with: cd e2e && go test -v ./...   (needs rsyslogd on the PATH or
// in /usr/sbin, and its imrelp module; Debian: apt-get install rsyslog
// rsyslog-relp). Its tests are Unix-only: rsyslogd, and the signals that
// stop and restart it, are.
package e2e
