// What `skiff new filter <name>` writes: a working filter, its emulator test and README, and (once per project) the
// asconfig.json that extends the SDK preset and a tsconfig.json that gives editors AssemblyScript's types.

export interface FilterNames {
  /** The folder and module name, e.g. "my-filter". */
  name: string;
  /** For metric names: "my_filter". */
  snake: string;
  /** For class names: "MyFilter". */
  pascal: string;
}

export function filterNames(name: string): FilterNames {
  const words = name.split("-");
  return { name, snake: words.join("_"), pascal: words.map((w) => w[0].toUpperCase() + w.slice(1)).join("") };
}

export function filterSource({ name, snake, pascal }: FilterNames): string {
  return `// ${name}: adds \`x-${name}: <greeting>\` to every response and counts the requests it saw. Configuration (JSON):
// { "greeting": "hello" }; an unknown or mistyped field is rejected, naming it, and Envoy keeps the previous one.
import {
  ConfigReader, Counter, HeadersAction, HttpContext, LogLevel, RootContext, log, registerRootContext,
} from "@skiff/proxy-wasm";
export * from "@skiff/proxy-wasm/dispatcher";

class ${pascal}Root extends RootContext {
  greeting: string = "hello";
  // Metrics are fields of the root, named <filter>.<metric>: /stats shows wasmcustom.${snake}.requests.
  readonly requests: Counter = new Counter("${snake}.requests");

  onConfigure(configurationSize: usize): bool {
    const config = ConfigReader.parse(configurationSize > 0 ? this.pluginConfiguration() : "");
    const greeting = config.string("greeting", "hello");
    config.rejectUnknownFields();
    if (!config.ok) {
      log(LogLevel.Error, "${name}: invalid configuration: " + config.error);
      return false;
    }
    this.greeting = greeting;
    return true;
  }

  createHttpContext(contextId: u32): HttpContext | null {
    return new ${pascal}(contextId, this);
  }
}

class ${pascal} extends HttpContext {
  constructor(contextId: u32, readonly plugin: ${pascal}Root) {
    super(contextId);
  }

  onRequestHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    this.plugin.requests.increment();
    return HeadersAction.Continue;
  }

  onResponseHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    this.response.headers.set("x-${name}", this.plugin.greeting);
    return HeadersAction.Continue;
  }
}

registerRootContext((contextId: u32): RootContext => new ${pascal}Root(contextId));
`;
}

export function filterTest({ name, snake }: FilterNames): string {
  return `// ${name} in the Skiff host emulator: the compiled module runs in Node as it runs in Envoy. Build it first
// (npx skiff build), then: npx vitest run
import { existsSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { Emulator } from "@skiff/proxy-wasm/testing";

const MODULE = "build/filters/${name}.wasm";
const GET = { ":method": "GET", ":path": "/", ":authority": "example.com" };

describe("${name}", () => {
  beforeAll(() => {
    if (!existsSync(MODULE)) throw new Error(\`\${MODULE} is missing: run npx skiff build\`);
  });

  it("adds the greeting to every response and counts requests", async () => {
    const vm = await Emulator.load(MODULE, { pluginConfig: { greeting: "hi" } });
    const stream = vm.http();
    stream.sendRequestHeaders(GET, { endOfStream: true });
    stream.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
    expect(stream.responseHeaders.get("x-${name}")).toBe("hi");
    expect(vm.metric("${snake}.requests")).toBe(1);
  });

  it("rejects a mistyped field, naming it, and keeps the configuration in force", async () => {
    const vm = await Emulator.load(MODULE, { pluginConfig: { greeting: "hi" } });
    expect(vm.configure({ greeting: 7 })).toBe(false);
    expect(vm.logMessages("error").at(-1)).toMatch(/greeting/);
    const stream = vm.http();
    stream.sendRequestHeaders(GET, { endOfStream: true });
    stream.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
    expect(stream.responseHeaders.get("x-${name}")).toBe("hi");
  });
});
`;
}

export function filterReadme({ name, snake }: FilterNames): string {
  return `# ${name}

Adds \`x-${name}: <greeting>\` to every response and counts the requests it saw.

## Configuration

JSON in the plugin configuration. An unknown or mistyped field rejects the whole configuration with a log line naming
it, and Envoy keeps the previous one.

| field | type | default | meaning |
| --- | --- | --- | --- |
| \`greeting\` | string | \`"hello"\` | The value of \`x-${name}\`. |

## Metrics

| metric | meaning |
| --- | --- |
| \`${snake}.requests\` | Requests the filter saw (\`wasmcustom.${snake}.requests\` in Envoy's /stats). |

## Build, test, run

\`\`\`sh
npx skiff build                                   # build/filters/${name}.wasm (every filter; --watch rebuilds on change)
npx vitest run filters/${name}                    # the emulator test beside this file
npx skiff run ${name} --upstream 127.0.0.1:8080 --config '{"greeting":"hi"}'   # a local Envoy in front of that upstream
\`\`\`
`;
}

/** The project's compiler configuration: the SDK preset (targets small, the default of skiff build; release; debug). */
export const ASCONFIG = `{
  "extends": "@skiff/proxy-wasm/asconfig.json"
}
`;

/** For editors: the filters are AssemblyScript (its types, not Node's); the tests beside them are TypeScript. */
export const FILTERS_TSCONFIG = `{
  "extends": "assemblyscript/std/assembly.json",
  "include": ["./**/*.ts"],
  "exclude": ["./**/*.test.ts"]
}
`;
