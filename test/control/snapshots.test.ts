// Snapshots: resources are encoded once, with a version per resource; a resource that does not encode is named
// with its field, and the proxy keeps its previous snapshot.
import { describe, expect, it } from "vitest";
import { SnapshotCache, SnapshotError } from "../../control/snapshots/cache.js";
import { TypeUrl } from "../../control/resources.js";
import { meshResources } from "./fixtures.js";

describe("SnapshotCache", () => {
  it("numbers snapshots per proxy and keeps the same one when nothing changed", () => {
    const cache = new SnapshotCache();
    const seen: number[] = [];
    cache.onChange((_, snapshot) => seen.push(snapshot.version));
    expect(cache.set("p", meshResources({ clusters: { a: [1] }, routeTo: "a" })).version).toBe(1);
    expect(cache.set("p", meshResources({ clusters: { a: [1] }, routeTo: "a" })).version).toBe(1);
    expect(cache.set("p", meshResources({ clusters: { a: [2] }, routeTo: "a" })).version).toBe(2);
    expect(seen).toEqual([1, 2]);
  });

  it("gives a resource the same version whatever the proxy, and a new one when its content changes", () => {
    const cache = new SnapshotCache();
    const version = (node: string, port: number) =>
      cache.set(node, meshResources({ clusters: { a: [port] }, routeTo: "a" })).resources.get(TypeUrl.ClusterLoadAssignment)!.get("a")!.version;
    expect(version("p1", 1)).toBe(version("p2", 1));
    expect(version("p1", 2)).not.toBe(version("p2", 1));
  });

  it("rejects a snapshot with a bad resource, naming the resource and the field, and keeps the previous one", () => {
    const cache = new SnapshotCache();
    const good = cache.set("p", meshResources({ clusters: { a: [1] }, routeTo: "a" }));
    const bad = meshResources({ clusters: { a: [1], b: [2] }, routeTo: "a" });
    bad[TypeUrl.Cluster][1].body.connect_timeout = "soon";
    bad[TypeUrl.ClusterLoadAssignment][0].body.endpoints = [{ lb_endpoints: [{ endpoint: { address: { socket_address: { port_value: "http" } } } }] }];
    let error: unknown;
    try {
      cache.set("p", bad);
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(SnapshotError);
    const message = (error as Error).message;
    expect(message).toContain('Cluster "b": field connect_timeout');
    expect(message).toContain('ClusterLoadAssignment "a": field endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value');
    expect(cache.get("p")).toBe(good);
  });

  it("names an unknown field and an Any of an unknown type", () => {
    const cache = new SnapshotCache();
    const bad = meshResources({ clusters: { a: [1] }, routeTo: "a" });
    bad[TypeUrl.Cluster][0].body.conect_timeout = "1s";
    bad[TypeUrl.Listener][0].body.listener_filters = [{ name: "x", typed_config: { "@type": "type.googleapis.com/nope.v1.Nothing" } }];
    expect(() => cache.set("p", bad)).toThrow(/Cluster "a": field conect_timeout: unknown field[\s\S]*Listener "ingress": field listener_filters\[0\]\.typed_config\.@type/);
  });
});
