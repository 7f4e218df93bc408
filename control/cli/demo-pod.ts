// One coolstore service inside its pod, for `skiff demo`'s mesh layout (demo-mesh.ts starts it in the pod's network
// namespace): it listens on the pod's address and, for webapp, calls catalog by its service name, which the pod's
// sidecar captures. It says "ready" on stdout once it listens and exits when its stdin closes.
import { type DemoService, EAST_WEST, serveDemoService } from "./demo-services.js";

const service = process.argv[2] as DemoService;
await serveDemoService(service, "0.0.0.0", EAST_WEST);
process.stdout.write("ready\n");
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
