// A web server using only Go's standard library: kiln's Go buildpack builds it into a
// static binary and the image runs it as the `web` process.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"runtime"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "Hello from Go %s on %s/%s, built by kiln!\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	})
	log.Printf("listening on :%s", port)
	log.Fatal(http.ListenAndServe(":"+port, nil))
}
