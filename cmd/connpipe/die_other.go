//go:build !unix

package main

import "os"

// dieBy exits with code: the process cannot end by a signal here.
func dieBy(_ os.Signal, code int) { os.Exit(code) }
