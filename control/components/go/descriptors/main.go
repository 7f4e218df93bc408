// Writes every protobuf file descriptor linked into this program as one binary FileDescriptorSet (the file named by
// the first argument), each file after the files it imports. The components builder links in every package of
// github.com/envoyproxy/go-control-plane/envoy (a generated imports.go of blank imports, from `go list`), so the set
// holds every Envoy API message and extension of that release, with what they import (xds, udpa, validate,
// googleapis, OpenTelemetry, the well-known types). protoc-gen-go embeds each file's FileDescriptorProto as protoc
// produced it, json_name included; protodesc turns the linked descriptors back into those protos.
package main

import (
	"fmt"
	"os"
	"sort"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: descriptors OUTPUT.binpb")
		os.Exit(2)
	}
	var files []protoreflect.FileDescriptor
	protoregistry.GlobalFiles.RangeFiles(func(file protoreflect.FileDescriptor) bool {
		files = append(files, file)
		return true
	})
	// Sorted, so the same modules give the same bytes.
	sort.Slice(files, func(i, j int) bool { return files[i].Path() < files[j].Path() })

	set := &descriptorpb.FileDescriptorSet{}
	added := map[string]bool{}
	var add func(file protoreflect.FileDescriptor)
	add = func(file protoreflect.FileDescriptor) {
		if added[file.Path()] {
			return
		}
		added[file.Path()] = true
		imports := file.Imports()
		for i := 0; i < imports.Len(); i++ {
			if imports.Get(i).IsPlaceholder() {
				fmt.Fprintf(os.Stderr, "%s imports %s, which is not linked in\n", file.Path(), imports.Get(i).Path())
				os.Exit(1)
			}
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(file))
	}
	for _, file := range files {
		add(file)
	}
	out, err := proto.MarshalOptions{Deterministic: true}.Marshal(set)
	if err == nil {
		err = os.WriteFile(os.Args[1], out, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%d files, %d bytes\n", len(set.File), len(out))
}
