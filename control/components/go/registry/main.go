// The OCI registry `distribution` (github.com/distribution/distribution/v3), as its cmd/registry builds it but with
// only the auth methods and storage drivers tests use, so no cloud SDK is compiled in. One addition:
// `registry htpasswd USER` reads a password on stdin and prints an htpasswd line with its bcrypt hash, the only hash
// distribution's htpasswd auth accepts, so tests can write credentials without other tools.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/auth/token"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"golang.org/x/crypto/bcrypt"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "htpasswd" {
		password, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && password == "" {
			fmt.Fprintln(os.Stderr, "registry htpasswd USER: give the password on stdin")
			os.Exit(2)
		}
		hash, err := bcrypt.GenerateFromPassword([]byte(strings.TrimRight(password, "\r\n")), bcrypt.DefaultCost)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("%s:%s\n", os.Args[2], hash)
		return
	}
	// Exits non-zero by itself when the command fails.
	registry.RootCmd.Execute() // nolint:errcheck
}
