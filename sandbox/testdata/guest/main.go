// Command guest is the sandbox tests' job: the first word of stdin picks
// what it does, the rest is its argument.
package main

import (
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

var sink uint64

func main() {
	in, _ := io.ReadAll(os.Stdin)
	mode, arg, _ := strings.Cut(string(in), " ")
	mode = strings.TrimSpace(mode)
	switch mode {
	case "echo": // stdout gets arg, stderr a note
		os.Stdout.WriteString(arg)
		os.Stderr.WriteString("echoed\n")
	case "exit": // "exit CODE MESSAGE"
		code, msg, _ := strings.Cut(arg, " ")
		n, _ := strconv.Atoi(code)
		os.Stderr.WriteString(msg + "\nsecond line\n")
		os.Exit(n)
	case "panic":
		panic("guest panicked: " + arg)
	case "loop": // forever
		for {
			sink++
		}
	case "spin": // arg iterations of a busy loop
		n, _ := strconv.ParseUint(strings.TrimSpace(arg), 10, 64)
		x := uint64(1)
		for i := uint64(0); i < n; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
		fmt.Println(x)
	case "alloc": // keep allocating
		var keep [][]byte
		for i := 0; ; i++ {
			b := make([]byte, 1<<20)
			b[i%len(b)] = 1
			keep = append(keep, b)
		}
	case "spew": // write stdout forever
		line := []byte(strings.Repeat("x", 1023) + "\n")
		for {
			os.Stdout.Write(line)
		}
	case "stderr": // a lot of stderr, then success
		os.Stderr.WriteString(strings.Repeat("e", 1<<20))
		os.Stdout.WriteString("ok\n")
	case "probe":
		probe(strings.TrimSpace(arg))
	default:
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", mode)
		os.Exit(64)
	}
}

// probe prints everything a job could use to behave differently from run
// to run or machine to machine. arg is a host path it tries to create.
func probe(path string) {
	p := func(k string, v any) { fmt.Printf("%s=%v\n", k, v) }
	p("args", os.Args)
	p("environ", os.Environ())
	t0 := time.Now()
	p("now", t0.UTC().Format(time.RFC3339Nano))
	time.Sleep(time.Hour)
	p("slept", time.Since(t0) >= time.Hour)
	timer := time.After(10 * time.Minute)
	<-timer
	p("after", time.Now().UTC().Format(time.RFC3339Nano))
	b := make([]byte, 16)
	_, err := crand.Read(b)
	p("crypto/rand", hex.EncodeToString(b)+fmt.Sprint(err))
	p("math/rand", rand.Uint64())
	m := map[int]bool{}
	for i := range 32 {
		m[i] = true
	}
	var order []string
	for k := range m {
		order = append(order, strconv.Itoa(k))
	}
	p("maporder", strings.Join(order, ","))
	done := make(chan int)
	var results []int
	for i := range 8 {
		go func() { done <- i }()
	}
	for range 8 {
		results = append(results, <-done)
	}
	p("goroutines", results)
	p("numcpu", runtime.NumCPU())
	wd, err := os.Getwd()
	p("getwd", wd+" "+fmt.Sprint(err))
	host, err := os.Hostname()
	p("hostname", host+" "+fmt.Sprint(err))
	_, err = os.ReadDir("/")
	p("readdir", err != nil)
	_, err = os.ReadFile("/etc/passwd")
	p("readfile", err != nil)
	f, err := os.Create(path)
	p("create", err != nil)
	if f != nil {
		f.Close()
	}
	err = os.WriteFile(path, []byte("escaped"), 0o644)
	p("writefile", err != nil)
	err = os.Mkdir(path+".d", 0o755)
	p("mkdir", err != nil)
	keys := []string{}
	for _, kv := range os.Environ() {
		keys = append(keys, kv)
	}
	sort.Strings(keys)
	p("envkeys", len(keys))
}
