// etcd's own command line (the etcd binary's main is exactly this call), built from the server module at the version
// Kubernetes pins. Flags as etcd documents them: --data-dir, --listen-client-urls, --advertise-client-urls,
// --listen-peer-urls, --version, ...
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
