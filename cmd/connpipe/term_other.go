//go:build !(linux || darwin)

package main

import "os"

// termWidth returns 0: the width of a terminal is not known here.
func termWidth(*os.File) int { return 0 }
