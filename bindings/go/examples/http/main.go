// net/http over astranet, both ways: an http.Server serves a listener bound as the
// service "web", and an http.Client whose Transport dials through the mesh reaches it
// by name (the original package's HttpDial use case).
//
//	go run ./examples/http
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"

	"astranet.dev/astranet"
)

func main() {
	server := astranet.New().Server()
	addr, err := server.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer server.Close()
	client := astranet.New().Client()
	if err := client.Join("tcp", addr.String()); err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	l, err := server.Bind("", "web")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s, you asked for %s\n", l.Addr(), r.URL.Path)
	})}
	go srv.Serve(l)
	defer srv.Close()

	hc := &http.Client{Transport: &http.Transport{
		// "web:80" → the service "web"; another port names "web:<port>".
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(address)
			if err != nil {
				return nil, err
			}
			if port != "80" {
				host = net.JoinHostPort(host, port)
			}
			return client.DialContext(ctx, network, host)
		},
	}}
	for _, path := range []string{"/", "/status"} {
		resp, err := hc.Get("http://web" + path)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%s %s", resp.Status, body)
	}
}
