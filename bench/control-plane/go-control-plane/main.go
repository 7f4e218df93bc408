// go-control-plane (the reference Go xDS server) serving the same resources as Skiff's control plane, for the
// side-by-side benchmark in bench/control-plane/run.ts. It reads commands on stdin, one per line:
//
//	load FILE   set a snapshot from FILE (proto3 JSON by type URL, as Skiff's snapshots hold it) for every node,
//	            then print "acked MS" once every node has ACKed it for every type it was sent
//	wait N      print "synced" once N nodes have ACKed the current snapshot for CDS, EDS, LDS and RDS
//	mem         print "mem BYTES": heap in use after a GC
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoregistry"

	// Types that appear inside Any fields of the resources Skiff's translation makes (control/translate).
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

var typesToAck = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType}

type state struct {
	sync.Mutex
	version  string
	snapshot *cache.Snapshot
	streams  map[int64]string             // stream -> node id
	acked    map[string]map[string]string // node -> type -> acked version
	changed  chan struct{}
}

func (s *state) allAcked(nodes int) bool {
	if len(s.acked) < nodes {
		return false
	}
	for _, byType := range s.acked {
		for _, typeURL := range typesToAck {
			if byType[typeURL] != s.version {
				return false
			}
		}
	}
	return true
}

func load(file string, version string) (*cache.Snapshot, error) {
	text, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var byType map[string][]struct {
		Name string          `json:"name"`
		Body json.RawMessage `json:"body"`
	}
	if err := json.Unmarshal(text, &byType); err != nil {
		return nil, err
	}
	resources := map[resource.Type][]types.Resource{}
	for typeURL, list := range byType {
		messageType, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL)
		if err != nil {
			return nil, err
		}
		for _, item := range list {
			message := messageType.New().Interface()
			if err := protojson.Unmarshal(item.Body, message); err != nil {
				return nil, fmt.Errorf("%s %s: %w", typeURL, item.Name, err)
			}
			resources[typeURL] = append(resources[typeURL], message.(types.Resource))
		}
	}
	return cache.NewSnapshot(version, resources)
}

func main() {
	port := flag.Int("port", 0, "ADS port on 127.0.0.1")
	flag.Parse()
	snapshots := cache.NewSnapshotCache(true, cache.IDHash{}, nil)
	s := &state{streams: map[int64]string{}, acked: map[string]map[string]string{}, changed: make(chan struct{}, 1)}
	notify := func() {
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}
	callbacks := server.CallbackFuncs{
		StreamRequestFunc: func(stream int64, request *discovery.DiscoveryRequest) error {
			s.Lock()
			defer s.Unlock()
			node, known := s.streams[stream]
			if !known {
				node = request.GetNode().GetId()
				s.streams[stream] = node
				s.acked[node] = map[string]string{}
				if s.snapshot != nil {
					_ = snapshots.SetSnapshot(context.Background(), node, s.snapshot)
				}
			}
			if request.ResponseNonce != "" && request.ErrorDetail == nil {
				s.acked[node][request.TypeUrl] = request.VersionInfo
				notify()
			}
			return nil
		},
	}
	grpcServer := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(grpcServer, server.NewServer(context.Background(), snapshots, callbacks))
	listener, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		panic(err)
	}
	fmt.Printf("listening %d\n", listener.Addr().(*net.TCPAddr).Port)
	go func() { _ = grpcServer.Serve(listener) }()

	waitFor := func(nodes int) {
		for {
			s.Lock()
			done := s.allAcked(nodes)
			s.Unlock()
			if done {
				return
			}
			select {
			case <-s.changed:
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	input := bufio.NewScanner(os.Stdin)
	loads := 0
	for input.Scan() {
		fields := strings.Fields(input.Text())
		switch {
		case len(fields) == 2 && fields[0] == "load":
			loads++
			snapshot, err := load(fields[1], strconv.Itoa(loads))
			if err != nil {
				fmt.Printf("error %v\n", err)
				continue
			}
			start := time.Now()
			s.Lock()
			s.version, s.snapshot = strconv.Itoa(loads), snapshot
			nodes := []string{}
			for node := range s.acked {
				nodes = append(nodes, node)
			}
			s.Unlock()
			for _, node := range nodes {
				_ = snapshots.SetSnapshot(context.Background(), node, snapshot)
			}
			waitFor(len(nodes))
			fmt.Printf("acked %.1f\n", float64(time.Since(start).Microseconds())/1000)
		case len(fields) == 2 && fields[0] == "wait":
			nodes, _ := strconv.Atoi(fields[1])
			waitFor(nodes)
			fmt.Println("synced")
		case len(fields) == 1 && fields[0] == "mem":
			runtime.GC()
			var stats runtime.MemStats
			runtime.ReadMemStats(&stats)
			fmt.Printf("mem %d\n", stats.HeapAlloc)
		}
	}
}
