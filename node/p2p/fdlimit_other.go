//go:build !unix

package p2p

func fdLimit() int { return 4096 }
