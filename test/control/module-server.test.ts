// The control plane's HTTP server (modules by sha256, /status) facing bad requests: a malformed request target is
// answered 404 and the server keeps serving.
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jsonPage, ModuleServer } from "../../control/modules/server.js";

describe("module server", () => {
  let modules: ModuleServer;

  beforeAll(async () => {
    modules = await ModuleServer.start({ pages: { "/status": () => jsonPage([]) } });
  });

  afterAll(async () => {
    await modules?.stop();
  });

  it("answers a malformed request target with 404 and keeps serving modules and /status", async () => {
    const statusLine = await new Promise<string>((resolve, reject) => {
      const socket = connect(modules.port, "127.0.0.1", () => socket.write("GET http://[ HTTP/1.1\r\nHost: x\r\n\r\n"));
      socket.once("data", (data) => {
        resolve(String(data).split("\r\n")[0]!);
        socket.destroy();
      });
      socket.once("error", reject);
    });
    expect(statusLine).toBe("HTTP/1.1 404 Not Found");
    const module = modules.add(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]));
    expect((await fetch(module.uri)).status).toBe(200);
    expect(await (await fetch(`http://127.0.0.1:${modules.port}/status`)).json()).toEqual([]);
  });
});
