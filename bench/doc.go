// Package bench holds the benchmarks that compare this repository's
// connection manager (github.com/seed44b27a20/conn) with go-kit's
// util/conn v0.13.0 and with a bare net.Conn, measured in one process:
// Take, Write on an in-memory connection (serial and parallel), Write on a
// loopback TCP connection, the latency of a reconnect after the peer comes
// back, and the heap and goroutines an idle connected Manager keeps.
//
// It is a module of its own so that go-kit is a dependency of the
// benchmarks only, never of the library. The loopback servers it needs are
// written here, kept minimal so that what they cost is plain; the nested
// modules may import the repository's internal/testnet (Go's internal rule
// goes by import path), as e2e/ does.
//
// Run everything, with benchstat and the ratios the README's claims rest
// on, with the script beside this file:
//
//	bench/run
//
// and see BENCHMARKS.md at the repository root for a recorded run. To only
// check that the benchmarks build and run (as CI does):
//
//	cd bench && go test -run '^$' -bench . -benchtime=1x ./...
package bench
