// The original package's example/echo, ported: a node in environment "test.skynet"
// serves an echo service "skynet2"; a client node in the same environment dials it
// through a router with the vport2registry form ("name:key") and prints the echoes.
//
//	go run ./examples/echo [-n 3]
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"

	"astranet.dev/astranet"
)

func echoLoop(listener net.Listener) {
	for {
		conn, err := listener.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			io.Copy(conn, conn)
		}()
	}
}

func main() {
	count := flag.Int("n", 3, "echoes to request")
	flag.Parse()

	router := astranet.New().Router()
	addr, err := router.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer router.Close()

	server := astranet.New().WithEnv("test", "skynet").Server()
	client := astranet.New().WithEnv("test", "skynet").Client()
	for _, n := range []*astranet.Node{server, client} {
		if err := n.Join("tcp4", addr.String()); err != nil {
			log.Fatal(err)
		}
		defer n.Close()
	}

	l, err := server.Bind("", "skynet2")
	if err != nil {
		log.Fatal(err)
	}
	go echoLoop(l)

	for i := 0; i < *count; i++ {
		req, err := client.Dial("vport2registry", "skynet2:10000")
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			req.Write([]byte(fmt.Sprintf("Hello %d!\n", i)))
			req.(*astranet.Conn).CloseWrite()
		}()
		n, err := io.Copy(os.Stdout, req)
		fmt.Println("received", n, "bytes, error:", err)
		req.Close()
	}
}
